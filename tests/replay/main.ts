/**
 * The week-long replay as a script (not a test): seven simulated days through
 * the real serial path against real containers, then the report.
 *
 *   node_modules/.bin/bun tests/replay/main.ts [speed=6000] [frames per second=20]
 *
 * Its own database, Redis prefix, Docker namespace and pty pair, removed at the end.
 */
import { openPtyPair } from "../../hardware/pty-pair";
import { loadConfig } from "../../server/config";
import { createLogger } from "../../server/log";
import { createServices } from "../../server/services";
import { defineSandbox } from "../harness/sandbox";
import { formatReport } from "./report";
import { replayEnv, runWeekReplay } from "./week";

const [speed = 6000, rate = 20] = process.argv.slice(2).map(Number);
const sandbox = defineSandbox("bench");
await sandbox.create();
const pair = await openPtyPair(`${sandbox.dataDir}/tty`, "replay");
const services = await createServices(loadConfig({ ...sandbox.env, LOG_LEVEL: "error", ...replayEnv(pair.host) }), { log: createLogger({ level: "error" }) });
try {
  const report = await runWeekReplay(services, { pair, speed, rate, log: (line) => console.error(line) });
  console.log(formatReport(report));
  console.log(JSON.stringify(report, null, 2));
} finally {
  await services.close();
  await pair.close();
  await sandbox.destroy();
}
process.exit(0);
