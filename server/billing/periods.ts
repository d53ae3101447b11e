import { AppError } from "../errors";

/**
 * Billing periods are calendar months in UTC, named `YYYY-MM`. Every bound is
 * half-open: a period holds [start, end).
 */
export type Period = { name: string; start: Date; end: Date };

const PERIOD = /^(\d{4})-(0[1-9]|1[0-2])$/;

export function parsePeriod(name: string): Period {
  const match = PERIOD.exec(name);
  if (!match) throw new AppError("VALIDATION_FAILED", "A period is a month written YYYY-MM", { details: { period: name } });
  const year = Number(match[1]);
  const month = Number(match[2]) - 1;
  return { name, start: new Date(Date.UTC(year, month, 1)), end: new Date(Date.UTC(year, month + 1, 1)) };
}

/** The period that contains `at`. */
export function periodOf(at: Date): Period {
  return parsePeriod(`${at.getUTCFullYear()}-${String(at.getUTCMonth() + 1).padStart(2, "0")}`);
}

/** The last period that ended at or before `at`. */
export function previousPeriod(at: Date): Period {
  return periodOf(new Date(periodOf(at).start.getTime() - 1));
}

export const HOUR_MS = 3_600_000;

/** Start of the UTC hour containing `ms`. */
export function hourFloor(ms: number): number {
  return Math.floor(ms / HOUR_MS) * HOUR_MS;
}
