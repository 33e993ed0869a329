// Validates one ServiceMonitor (JSON on stdin) against the Prometheus Operator's schema, as published in the
// npm package @kubernetes-models/prometheus-operator, installed by tests/suite/deploy.rs into target/deploy-npm
// (the working directory). Exits non-zero with the schema's errors when it does not validate.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const model = join(
  process.cwd(),
  "node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
);
const { ServiceMonitor } = await import(pathToFileURL(model).href);
const object = JSON.parse(readFileSync(0, "utf8"));
new ServiceMonitor(object).validate();
console.log("valid");
