#!/usr/bin/env python3
"""Checks deploy/kubernetes/ beyond schema validation (run by scripts/check-deploy.sh).

1. Renders kustomization.yaml the way `kubectl apply -k` would for what it uses here
   (resources, namespace, configMapGenerator, images) into one multi-document file, so the
   schema validator also sees the generated ConfigMap (--rendered writes it).
2. Cross-checks the manifests against each other, against concur.toml (the server's config in
   the cluster), config/docker.toml and the Dockerfile (the image's layout and user), and
   src/metrics.rs (the metric the HPA scales on). Each check prints one line.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import yaml

RESULTS: list[tuple[bool, str]] = []


def check(ok: bool, what: str) -> None:
    RESULTS.append((bool(ok), what))
    print(f"check-deploy: {'ok' if ok else 'FAIL'}: {what}", flush=True)


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def render(kdir: Path) -> list[dict]:
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    docs: list[dict] = []
    for res in k.get("resources", []):
        docs += [d for d in yaml.safe_load_all((kdir / res).read_text()) if d]
    for gen in k.get("configMapGenerator", []):
        data = {Path(f).name: (kdir / f).read_text() for f in gen.get("files", [])}
        labels = gen.get("options", {}).get("labels", {})
        docs.append({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": gen["name"], "labels": labels},
            "data": data,
        })
    ns = k.get("namespace")
    for d in docs:
        if ns and d["kind"] not in CLUSTER_SCOPED:
            d["metadata"]["namespace"] = ns
    for img in k.get("images", []):
        for d in docs:
            for c in containers(d):
                name, _, _ = c["image"].partition(":")
                if name == img["name"]:
                    c["image"] = img.get("newName", name) + ":" + img.get("newTag", "latest")
    return docs


def containers(d: dict) -> list[dict]:
    spec = d.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        check(False, f"exactly one {kind} in the kustomization (found {len(found)})")
        sys.exit(1)
    return found[0]


def cpu(v: str) -> float:
    return float(v[:-1]) / 1000 if str(v).endswith("m") else float(v)


def subset(a: dict, b: dict) -> bool:
    return all(b.get(k) == v for k, v in a.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, default=Path("."))
    ap.add_argument("--rendered", type=Path, required=True)
    a = ap.parse_args()
    repo = a.repo
    kdir = repo / "deploy/kubernetes"
    docs = render(kdir)
    a.rendered.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    print(f"check-deploy: rendered {len(docs)} objects: "
          + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs))

    dep = one(docs, "Deployment")
    svc = one(docs, "Service")
    pdb = one(docs, "PodDisruptionBudget")
    hpa = one(docs, "HorizontalPodAutoscaler")
    sm = one(docs, "ServiceMonitor")
    cm = one(docs, "ConfigMap")
    nsobj = one(docs, "Namespace")
    pod = dep["spec"]["template"]
    pspec = pod["spec"]
    (c,) = pspec["containers"]
    toml_name, toml_text = next(iter(cm["data"].items()))
    cfg = tomllib.loads(toml_text)
    srv, ex = cfg["server"], cfg["executor"]

    # --- the namespace ---
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    check(k.get("namespace") == nsobj["metadata"]["name"],
          f"kustomization namespace {k.get('namespace')} = Namespace {nsobj['metadata']['name']}")

    # --- the thread budget against the CPU resources ---
    threads = ex.get("sessions", 2) * ex.get("intra_op_threads", 1)
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    check(cpu(req["cpu"]) == cpu(lim["cpu"]) == threads,
          f"cpu request {req['cpu']} = limit {lim['cpu']} = sessions x intra_op_threads = {threads}")
    check(req["memory"] == lim["memory"], f"memory request = limit = {req['memory']} (Guaranteed QoS)")

    # --- shutdown: grace period covers the server's own drain ---
    grace_s = (srv.get("shutdown_grace_ms", 0) + srv.get("drain_timeout_ms", 15000)) / 1000
    tgps = pspec["terminationGracePeriodSeconds"]
    check(tgps > grace_s,
          f"terminationGracePeriodSeconds {tgps} > shutdown_grace_ms + drain_timeout_ms = {grace_s:g} s")
    check(srv.get("shutdown_grace_ms", 0) >= 2 * pspec["containers"][0]["readinessProbe"]["periodSeconds"] * 1000,
          f"shutdown_grace_ms {srv.get('shutdown_grace_ms', 0)} covers 2 readiness periods "
          f"({c['readinessProbe']['periodSeconds']} s each) for endpoint removal")

    # --- probes and port ---
    port = int(srv["listen"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(srv["listen"].startswith("0.0.0.0:"), f"server.listen {srv['listen']} on every interface of the pod")
    check(ports.get("http") == port, f"containerPort http = {ports.get('http')} = server.listen port {port}")
    check(c["readinessProbe"]["httpGet"]["path"] == "/ready"
          and c["readinessProbe"]["httpGet"]["port"] in ("http", port), "readiness probe: GET /ready on http")
    check(c["livenessProbe"]["httpGet"]["path"] == "/health"
          and c["livenessProbe"]["httpGet"]["port"] in ("http", port), "liveness probe: GET /health on http")
    ann = pod["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port)
          and ann.get("prometheus.io/path") == "/metrics",
          f"prometheus.io annotations: scrape, port {ann.get('prometheus.io/port')}, path {ann.get('prometheus.io/path')}")

    # --- the config file reaches the server ---
    vol = next(v for v in pspec["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"])
    mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
    argv = c.get("command", []) + c.get("args", [])
    cfg_arg = argv[argv.index("--config") + 1] if "--config" in argv else None
    check(cfg_arg == f"{mount['mountPath']}/{toml_name}",
          f"--config {cfg_arg} = ConfigMap {cm['metadata']['name']} mounted at {mount['mountPath']} + {toml_name}")

    # --- the image: layout (config/docker.toml) and user (Dockerfile) ---
    docker = tomllib.loads((repo / "config/docker.toml").read_text())
    for key in ("dir", "ort_library"):
        check(cfg["model"].get(key) == docker["model"].get(key),
              f"model.{key} = {cfg['model'].get(key)} as in the image (config/docker.toml)")
    check(cfg["chat"].get("knowledge_base") == docker["chat"].get("knowledge_base"),
          f"chat.knowledge_base = {cfg['chat'].get('knowledge_base')} as in the image")
    dockerfile = (repo / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\d+):(\d+)", dockerfile, re.MULTILINE)
    sc = pspec["securityContext"]
    check(bool(user) and (str(sc.get("runAsUser")), str(sc.get("runAsGroup"))) == user[-1],
          f"runAsUser:runAsGroup {sc.get('runAsUser')}:{sc.get('runAsGroup')} = Dockerfile USER "
          f"{':'.join(user[-1]) if user else '?'}")
    cmd_json = re.findall(r'^CMD\s+\["([^"]+)"', dockerfile, re.MULTILINE)
    check(bool(cmd_json) and c["command"][0] == cmd_json[-1],
          f"command {c['command'][0]} = the image's binary {cmd_json[-1] if cmd_json else '?'}")
    csc = c.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True and csc.get("allowPrivilegeEscalation") is False
          and csc.get("readOnlyRootFilesystem") is True and csc.get("capabilities", {}).get("drop") == ["ALL"]
          and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          "restricted security context (non-root, no escalation, read-only root, no capabilities, seccomp)")

    # --- selectors ---
    pod_labels = pod["metadata"]["labels"]
    check(subset(dep["spec"]["selector"]["matchLabels"], pod_labels), "Deployment selector matches its pod labels")
    check(subset(svc["spec"]["selector"], pod_labels), "Service selector matches the pod labels")
    check(all(p["targetPort"] in ports or p["targetPort"] in ports.values() for p in svc["spec"]["ports"]),
          "Service targetPort names a container port")
    check(pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"],
          "PodDisruptionBudget selector = Deployment selector")
    check(subset(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]),
          "ServiceMonitor selector matches the Service's labels")
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    check(all(e.get("port") in svc_ports and e.get("path", "/metrics") == "/metrics" for e in sm["spec"]["endpoints"]),
          f"ServiceMonitor endpoints scrape /metrics on Service port(s) {sorted(svc_ports)}")
    check(sm["apiVersion"] == "monitoring.coreos.com/v1" and "namespaceSelector" not in sm["spec"],
          "ServiceMonitor monitoring.coreos.com/v1 in the Service's namespace (schema not checked: a CRD)")

    # --- the autoscaler ---
    tgt = hpa["spec"]["scaleTargetRef"]
    check(tgt["kind"] == "Deployment" and tgt["name"] == dep["metadata"]["name"],
          f"HPA scales Deployment/{tgt['name']}")
    check("replicas" not in dep["spec"], "Deployment has no spec.replicas (the HPA owns it)")
    check(hpa["spec"]["minReplicas"] >= 2 and pdb["spec"].get("maxUnavailable") == 1,
          f"minReplicas {hpa['spec']['minReplicas']} >= 2 with PDB maxUnavailable 1: a drain keeps a replica")
    pods_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    check(pods_metrics == ["concur_queue_depth"], f"HPA Pods metric: {pods_metrics}")
    metrics_rs = (repo / "src/metrics.rs").read_text()
    check('Some("concur".into())' in metrics_rs and re.search(r'gauge\(\s*"queue_depth"', metrics_rs) is not None,
          "src/metrics.rs registers the gauge queue_depth under the prefix concur")
    adapter_dir = kdir / "prometheus-adapter"
    values = yaml.safe_load((adapter_dir / "values.yaml").read_text())["rules"]["custom"]
    cmap = yaml.safe_load((adapter_dir / "config-map.yaml").read_text())
    cm_rules = yaml.safe_load(cmap["data"]["config.yaml"])["rules"]
    check(values == cm_rules, "prometheus-adapter rules: values.yaml = config-map.yaml")
    exposed = {r["name"]["as"] for r in cm_rules}
    series = {re.match(r"\s*(\w+)", r["seriesQuery"]).group(1) for r in cm_rules}
    check(set(pods_metrics) <= exposed and "concur_queue_depth" in series,
          f"adapter exposes {sorted(exposed)} from series {sorted(series)}")
    check(all(r["resources"]["overrides"].get("pod", {}).get("resource") == "pod"
              and r["resources"]["overrides"].get("namespace", {}).get("resource") == "namespace" for r in cm_rules),
          "adapter maps the namespace and pod labels to Kubernetes objects (Pods metric)")
    rules_out = a.rendered.with_name("adapter-queries.rules.yaml")
    rules_out.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": [
        {"record": f"adapter:{r['name']['as']}",
         "expr": r["metricsQuery"].replace("<<.Series>>", re.match(r"\s*(\w+)", r["seriesQuery"]).group(1))
         .replace("<<.LabelMatchers>>", 'namespace="concur",pod=~"concur-.*"').replace("<<.GroupBy>>", "pod")}
        for r in cm_rules]}]}))

    failed = sum(1 for ok, _ in RESULTS if not ok)
    print(f"check-deploy: manifest checks: {len(RESULTS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
