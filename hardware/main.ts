// The hardware monitor alone: owns the charge controller (through the Node
// serial bridge), stores readings, runs the power policy. Run exactly one.
import { boot } from "../server/boot";

await boot({ api: false, workers: false, monitor: true });
