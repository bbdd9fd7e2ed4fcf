// Validates custom resources against the schemas the @kubernetes-models
// packages carry (generated from each project's own CRDs).
// Input on stdin: a JSON array of objects. Prints one line per object and
// exits 1 if any is invalid or of a kind no package here describes.
// (kubernetes-validate, run by tests/test_k8s.py, covers the built-in kinds.)
import { readFileSync } from "node:fs";

const PACKAGES = {
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
  "keda.sh": "@kubernetes-models/keda",
  "cert-manager.io": "@kubernetes-models/cert-manager",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

const objects = JSON.parse(readFileSync(0, "utf8"));
let failures = 0;
for (const object of objects) {
  const { apiVersion, kind } = object;
  const name = `${kind}/${object.metadata?.name} (${apiVersion})`;
  const pkg = PACKAGES[apiVersion.split("/")[0]];
  if (!pkg) {
    console.log(`FAIL ${name}: no schema package for this API group`);
    failures += 1;
    continue;
  }
  let Model;
  try {
    ({ [kind]: Model } = await import(`${pkg}/${apiVersion}/${kind}`));
  } catch (error) {
    console.log(`FAIL ${name}: ${pkg} has no model for it (${error.code ?? error.message})`);
    failures += 1;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok   ${name}`);
  } catch (error) {
    console.log(`FAIL ${name}: ${error.message}`);
    failures += 1;
  }
}
process.exit(failures ? 1 : 0);
