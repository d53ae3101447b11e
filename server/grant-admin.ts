// Grants the admin role to an existing account: `npm run admin:grant -- ada@example.com`.
// Uses the same configuration as the platform (DATABASE_URL, or the embedded
// database in DATA_DIR — stop the platform first, PGlite serves one process).
import { openDatabase } from "../db/client";
import { migrateDatabase } from "../db/migrate";
import { grantAdmin } from "./admin/bootstrap";
import { ConfigError, loadConfig } from "./config";
import { AppError } from "./errors";

const email = process.argv[2];
if (!email) {
  console.error("usage: npm run admin:grant -- <email of a registered account>");
  process.exit(64);
}
try {
  const config = loadConfig();
  const database = await openDatabase(config.database);
  try {
    await migrateDatabase(database, config.database.url);
    const result = await grantAdmin(database.db, email);
    console.log(result.changed ? `${result.email} is now an admin (user ${result.userId})` : `${result.email} was already an admin`);
  } finally {
    await database.close();
  }
} catch (error) {
  console.error(error instanceof AppError || error instanceof ConfigError ? error.message : String(error));
  process.exit(1);
}
