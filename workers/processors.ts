import { adminProcessor } from "./admin";
import type { AnyProcessor } from "./base";
import { billingProcessor } from "./billing";
import { emergencyProcessor } from "./emergency";
import { lifecycleProcessor } from "./lifecycle";
import { mailProcessor } from "./mail";
import { notifyProcessor } from "./notify";

/** Every processor this code base runs; entry points start them all. */
export const processors: AnyProcessor[] = [mailProcessor, lifecycleProcessor, emergencyProcessor, billingProcessor, adminProcessor, notifyProcessor];
