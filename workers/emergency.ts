import { enforcePowerLevel, handlePowerEmergency } from "../server/energy/emergency";
import { defineProcessor } from "./base";

/**
 * Power emergencies: each level change the hardware monitor records, and a
 * periodic pass, converge the instances and the backup-power signal to what
 * the current level requires (logic in server/energy/emergency.ts).
 *
 * One job at a time per process: passes would only get in each other's way,
 * and a recovery that is staggering notices a newer change and gives way to it.
 */
export const emergencyProcessor = defineProcessor({
  queue: "emergency",
  concurrency: 1,
  schedules: (config) => [{ id: "emergency-enforce", every: config.energy.emergency.enforceIntervalMs, name: "enforce", data: {} }],
  handlers: {
    "power-emergency": (payload, ctx) => handlePowerEmergency(ctx, payload),
    enforce: (_payload, ctx) => enforcePowerLevel(ctx),
  },
});
