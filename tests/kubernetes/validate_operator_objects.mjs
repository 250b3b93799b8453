// Validates Prometheus Operator objects (ServiceMonitor, PrometheusRule, ...) against the
// schemas of npm's @kubernetes-models/prometheus-operator, generated from the operator's API.
//   node validate_operator_objects.mjs NODE_MODULES_DIR < objects.json
// Reads a JSON array of objects; prints a JSON array of {kind, name, error}; exits 1 on any error.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
const problems = [];
for (const object of objects) {
  const [group, version] = object.apiVersion.split("/");
  const file = join(modules, "@kubernetes-models", "prometheus-operator", group, version, `${object.kind}.js`);
  const name = object.metadata?.name ?? "";
  let model;
  try {
    model = (await import(pathToFileURL(file).href))[object.kind];
  } catch (error) {
    problems.push({ kind: object.kind, name, error: `no schema for ${object.apiVersion} ${object.kind}` });
    continue;
  }
  try {
    new model(object).validate();
  } catch (error) {
    problems.push({ kind: object.kind, name, error: String(error.message ?? error) });
  }
}
process.stdout.write(JSON.stringify(problems));
process.exit(problems.length ? 1 : 0);
