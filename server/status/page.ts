import { escapeHtml } from "../html";
import type { PublicStatus } from "./public-status";

/**
 * The status page as one small HTML document: no scripts, no fonts, no
 * images, no external assets; inline CSS that reads on a phone. The battery
 * meter is the page itself, like Low-tech Magazine's: its fill is the state
 * of charge. It reloads itself every minute.
 */

const LEVEL_TEXT: Record<string, { label: string; color: string; meaning: string }> = {
  normal: { label: "Normal", color: "#2e7d32", meaning: "Everything runs." },
  conserve: { label: "Conserve", color: "#b26a00", meaning: "Interruptible instances run slower to save power; no new ones start." },
  critical: { label: "Critical", color: "#c62828", meaning: "Interruptible instances are paused until the sun returns." },
  shutdown: { label: "Shutdown", color: "#6a1b9a", meaning: "Only critical instances run." },
};

function duration(minutes: number): string {
  if (minutes < 90) return `${minutes} min`;
  const hours = minutes / 60;
  return hours < 48 ? `${Math.round(hours)} h` : `${Math.round(hours / 24)} days`;
}

function forecastSentence(s: PublicStatus): string {
  if (!s.forecast) return s.telemetry === "ok" ? "No forecast yet." : "No forecast: the charge controller is not reporting.";
  const next = s.forecast.next;
  if (!next) return `The battery is expected to stay above every threshold for the next ${s.forecast.horizonHours} hours (lowest ${s.forecast.lowestSoc} %).`;
  const earliest = next.earliestInMinutes !== null && next.earliestInMinutes < next.inMinutes! ? ` (${duration(next.earliestInMinutes)} at the earliest)` : "";
  return `Expected to fall below ${next.belowSoc} % — power level ${next.level} — in about ${duration(next.inMinutes!)}${earliest}.`;
}

export function renderStatusPage(s: PublicStatus): string {
  const level = LEVEL_TEXT[s.level] ?? LEVEL_TEXT.normal!;
  const soc = s.battery.soc;
  const fill = soc === null ? 0 : Math.max(0, Math.min(100, soc));
  const held = s.instances.paused + s.instances.stopped;
  const figure = (label: string, value: string) => `<div class="f"><span>${escapeHtml(label)}</span><b>${escapeHtml(value)}</b></div>`;
  const watts = (w: number | null) => (w === null ? "—" : `${Math.round(w)} W`);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="60">
<title>Sahary Cloud — power status</title>
<style>
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1b1b;background:linear-gradient(to top,#fff3c4 ${fill}%,#fafafa ${fill}%);min-height:100vh}
main{max-width:34rem;margin:0 auto;padding:1.25rem}
h1{font-size:1.2rem;margin:0 0 .25rem}
.soc{font-size:3.5rem;font-weight:700;line-height:1;margin:.75rem 0 .25rem}
.level{display:inline-block;padding:.2rem .6rem;border-radius:1rem;color:#fff;background:${level.color};font-weight:600}
.g{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.5rem;margin:1rem 0}
.f{background:#ffffffcc;border:1px solid #e3e3e3;border-radius:.5rem;padding:.5rem .7rem}
.f span{display:block;font-size:.8rem;color:#555}
.f b{font-size:1.15rem}
p{margin:.6rem 0}
small{color:#666}
</style>
</head>
<body>
<main>
<h1>Sahary Cloud runs on sunlight</h1>
<div class="soc">${soc === null ? "—" : `${soc} %`}</div>
<p>battery ${s.battery.trend === "charging" ? "charging" : s.battery.trend === "discharging" ? "discharging" : "level"}${s.telemetry === "ok" ? "" : ` <small>(controller ${escapeHtml(s.telemetry)})</small>`}</p>
<p><span class="level">${level.label}</span> ${escapeHtml(level.meaning)}</p>
<div class="g">
${figure("Solar now", watts(s.power.solarW))}
${figure("Load now", watts(s.power.loadW))}
${figure("Solar today", `${s.solarTodayKwh.toFixed(2)} kWh`)}
${figure("Held for power", `${held} paused or stopped`)}
${figure("Slowed down", `${s.instances.throttled}`)}
</div>
<p>${escapeHtml(forecastSentence(s))}</p>
<p><small>Updated ${escapeHtml(s.at.replace("T", " ").slice(0, 16))} UTC. Also as JSON: send <code>Accept: application/json</code>.</small></p>
</main>
</body>
</html>
`;
}
