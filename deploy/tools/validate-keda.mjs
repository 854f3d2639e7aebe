// Validates KEDA objects (ScaledObject, TriggerAuthentication) in a multi-document
// YAML stream read from stdin, against the schemas generated from KEDA's CRDs that
// the npm package @kubernetes-models/keda ships. Other kinds are skipped.
// Usage: kubectl kustomize deploy/kubernetes/scale-out | node validate-keda.mjs
// (run from a folder whose node_modules holds @kubernetes-models/keda and js-yaml).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { dirname, join } from "node:path";

const require = createRequire(pathToFileURL(process.cwd() + "/"));
const yaml = require("js-yaml");
// The package only exports ESM ("import" condition): locate it through its
// package.json and import the version folder by path.
const kedaDir = dirname(require.resolve("@kubernetes-models/keda/package.json"));
const keda = await import(pathToFileURL(join(kedaDir, "keda.sh", "v1alpha1", "index.js")).href);

const kinds = {
  ScaledObject: keda.ScaledObject,
  TriggerAuthentication: keda.TriggerAuthentication,
  ScaledJob: keda.ScaledJob,
  ClusterTriggerAuthentication: keda.ClusterTriggerAuthentication,
};
let checked = 0;
let failed = 0;
for (const doc of yaml.loadAll(readFileSync(0, "utf8"))) {
  if (!doc || doc.apiVersion !== "keda.sh/v1alpha1") continue;
  const Model = kinds[doc.kind];
  const name = `${doc.kind}/${doc.metadata?.name}`;
  if (!Model) {
    console.error(`FAIL ${name}: no schema for this kind`);
    failed++;
    continue;
  }
  checked++;
  try {
    new Model(doc).validate();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.error(`FAIL ${name}: ${e.message}`);
  }
}
console.log(`${checked} KEDA objects checked, ${failed} failed`);
process.exit(failed ? 1 : checked ? 0 : 2);
