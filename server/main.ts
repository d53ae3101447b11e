// Everything in one process, for a single box: API, workers and (when configured) the hardware monitor.
import { boot } from "./boot";

await boot({ api: true, workers: true, monitor: true });
