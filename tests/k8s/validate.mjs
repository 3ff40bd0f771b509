// Validates custom resources against their CRDs' schemas, as the API server would.
// Input on stdin: a JSON array of [where, document]; output: one line per invalid document,
// exit 1 if any (2 for a kind this script does not know).
import { readFileSync } from "node:fs";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";

const MODELS = {
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};
let failed = 0;
for (const [where, doc] of JSON.parse(readFileSync(0, "utf8"))) {
  const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) {
    console.log(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
    process.exit(2);
  }
  try {
    new Model(doc).validate();
  } catch (error) {
    failed += 1;
    console.log(`${where} ${doc.kind}: ${error.message}`);
  }
}
process.exit(failed ? 1 : 0);
