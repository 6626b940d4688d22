/** Where the tests find the repository's schema files and vectors (override with SLUICE_SCHEMAS_DIR / SLUICE_VECTORS). */
import { fileURLToPath } from "node:url";

// Compiled to dist/test/: the repository root is five levels up.
const repo = fileURLToPath(new URL("../../../../../", import.meta.url));
export const SCHEMAS = process.env["SLUICE_SCHEMAS_DIR"] || `${repo}schemas/json`;
export const VECTORS = process.env["SLUICE_VECTORS"] || `${repo}schemas/vectors/events.json`;
