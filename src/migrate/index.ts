// The migrate capability, for the migrate action, the all-in-one deploy, rollback and the CLI.

export { type MigrateReport, type MigrateRequest, migrateOnFirstHost } from "./action-flow.js";
export {
  type BackupResult,
  type BackupSettings,
  backupDir,
  checkRestore,
  type DbTarget,
  restoreBackup,
  restoreCommand,
  restoreConfirmation,
  takeBackup,
} from "./backup.js";
export {
  checkRollbackDatabase,
  type MigrationRecord,
  migrateLedgerEntry,
  migrationFor,
  type RollbackDatabasePlan,
  rollbackDatabasePlan,
} from "./ledger.js";
export {
  type MigrateContext,
  type MigrateOutcome,
  MigrationFailed,
  migrateService,
  runMigrations,
} from "./run.js";
export { type StageOptions, stageMigration } from "./stage.js";
export { migrateSections } from "./summary.js";
