// The API alone; run several behind a load balancer. Redis and PostgreSQL are the shared state.
import { boot } from "./boot";

await boot({ api: true, workers: false });
