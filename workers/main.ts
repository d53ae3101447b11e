// Workers alone; run as many as the queues need.
import { boot } from "../server/boot";

await boot({ api: false, workers: true });
