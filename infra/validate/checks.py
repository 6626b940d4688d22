"""Structural checks of the deployment files, one mode per check, run by infra/validate.sh:

    python checks.py MODE ARGS...

Each mode prints what is wrong and exits 1. The settings sluice-ingest reads come from the program itself
(`sluice-ingest config --keys`, one SLUICE_<KEY> a line, in the file named by $VALIDATE_INGEST_KEYS), so a
ConfigMap or compose variable that is not a setting is caught without parsing Rust here.
"""
import json, os, re, sys, tomllib
import yaml

mode, args = sys.argv[1], sys.argv[2:]
problems = []
def bad(msg): problems.append(msg)

def config_keys():
    """Settings sluice-ingest reads (from `sluice-ingest config --keys`), and the SLUICE_* variables
    sluice-produce's command line reads (its clap `env = "…"` attributes)."""
    ingest = set(open(os.environ["VALIDATE_INGEST_KEYS"]).read().split())
    if len(ingest) < 10 or not all(k.startswith("SLUICE_") for k in ingest):
        sys.exit(f"{os.environ['VALIDATE_INGEST_KEYS']}: not a `sluice-ingest config --keys` output")
    produce = set(re.findall(r'env = "(SLUICE_\w+)"', open("producers/src/main.rs").read()))
    return ingest, produce

def workspace_members():
    return tomllib.load(open("Cargo.toml", "rb"))["workspace"]["members"]

def mib(q):
    m = re.fullmatch(r"(\d+)(Mi|Gi|M|G)?", str(q))
    n, unit = int(m.group(1)), m.group(2)
    return n * {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20, None: 1 / 2**20}[unit]

if mode == "dockerfile":
    text = open(args[0]).read()
    lines = [l for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.lstrip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    if len(froms) < 2: bad("not multi-stage")
    final = lines[lines.index(froms[-1]):]
    users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root") or not users[-1].split(":")[0].isdigit():
        bad(f"final stage must switch to a numeric non-root USER, has {users}")
    if not any(l.upper().startswith("HEALTHCHECK ") and "/health/" in l for l in final):
        bad("final stage has no HEALTHCHECK on a /health/ endpoint")
    if not any(l.upper().startswith("ENTRYPOINT") and "sluice-ingest" in l for l in final):
        bad("ENTRYPOINT is not sluice-ingest")
    copied = " ".join(l for l in final if l.upper().startswith("COPY "))
    for b in ("sluice-ingest", "sluice-produce"):
        if b not in copied: bad(f"runtime stage does not copy {b}")
    if not re.search(r"SLUICE_METRICS_ADDR=0\.0\.0\.0:", text): bad("SLUICE_METRICS_ADDR not set to 0.0.0.0")
    # Every workspace member (and the ClickHouse DDL compiled in with include_str!) is copied into the
    # builder, and the .dockerignore allow-list lets it through: a new crate must not break the image.
    needed = workspace_members() + ["clickhouse"]
    # A member nested in another's folder (aggregator/sinks) comes with that folder.
    def covered(m, allowed):
        parts = m.split("/")
        return any("/".join(parts[:i]) in allowed for i in range(1, len(parts) + 1))
    copied_dirs = set(re.findall(r"^COPY (\S+) \./\1$", text, re.M))
    for m in needed:
        if not covered(m, copied_dirs): bad(f"builder does not COPY {m}")
    ignore = open(".dockerignore").read().split()
    if "*" not in ignore: bad(".dockerignore is not an allow-list (no '*')")
    allowed = {e[1:].rstrip("/") for e in ignore if e.startswith("!")}
    for m in needed + ["Cargo.toml", "Cargo.lock"]:
        if not covered(m, allowed): bad(f".dockerignore does not allow {m}")
    for m in (".state", "target", ".git"):
        if f"!{m}" in ignore or f"!{m}/" in ignore: bad(f".dockerignore lets {m} into the context")

elif mode == "compose":
    cfg = json.load(open(args[0]))
    src = yaml.safe_load(open(args[1]))
    ingest_keys, produce_keys = config_keys()
    svcs = cfg["services"]
    for need in ("kafka", "kafka-init", "postgres", "postgres-roles", "clickhouse", "migrate", "prometheus", "grafana",
                 "ingest", "producer"):
        if need not in svcs: bad(f"service {need} missing")
    for name, s in svcs.items():
        img = s.get("image", "")
        if img.endswith(":latest") or (":" not in img.split("/")[-1] and "build" not in s):
            bad(f"{name}: image {img!r} is not pinned to a tag")
        for p in s.get("ports", []):
            if p.get("host_ip") != "127.0.0.1": bad(f"{name}: port {p.get('published')} is not bound to 127.0.0.1")
        for k, v in (s.get("environment") or {}).items():
            if re.search(r"PASSWORD$", k) and v: bad(f"{name}: {k} set inline; use a *_FILE secret")
            if re.search(r"://[^/@:]+:[^/@]+@", str(v or "")): bad(f"{name}: {k} embeds a password in a URL")
        long_running = name not in ("kafka-init", "postgres-roles", "migrate", "producer")
        hc = s.get("healthcheck") or {}
        if long_running and (hc.get("disable") or not hc.get("test")): bad(f"{name}: no healthcheck")
    deps = {n: s.get("depends_on", {}) for n, s in svcs.items()}
    want = {("kafka-init", "kafka"): "service_healthy",
            ("ingest", "kafka-init"): "service_completed_successfully",
            ("ingest", "postgres"): "service_healthy", ("ingest", "clickhouse"): "service_healthy",
            ("postgres-roles", "postgres"): "service_healthy", ("migrate", "postgres-roles"): "service_completed_successfully",
            ("migrate", "clickhouse"): "service_healthy", ("ingest", "migrate"): "service_completed_successfully",
            ("producer", "ingest"): "service_healthy", ("grafana", "prometheus"): "service_healthy"}
    for (a, b), cond in want.items():
        got = deps.get(a, {}).get(b, {}).get("condition")
        if got != cond: bad(f"{a} depends_on {b}: condition {got!r}, want {cond!r}")
    ing = svcs["ingest"]
    env = ing.get("environment") or {}
    # Ingest runs as the least-privilege writer login without migrating; `migrate` runs as the owner.
    for svc, pg_secret in (("ingest", "postgres_ingest_password"), ("migrate", "postgres_password")):
        senv = svcs[svc].get("environment") or {}
        for k in senv:
            if k.startswith("SLUICE_") and k not in ingest_keys: bad(f"{svc}: {k} is not a sluice-ingest setting (ignored!)")
        secrets = {x["source"] for x in svcs[svc].get("secrets", [])}
        for key, sec in (("SLUICE_POSTGRES_PASSWORD_FILE", pg_secret), ("SLUICE_CLICKHOUSE_PASSWORD_FILE", "clickhouse_password")):
            if senv.get(key) != f"/run/secrets/{sec}" or sec not in secrets: bad(f"{svc}: {key} must be /run/secrets/{sec} from secret {sec}")
    if str(env.get("SLUICE_MIGRATE_ON_START", "true")).lower() != "false": bad("ingest: SLUICE_MIGRATE_ON_START must be false (the writer may not run DDL)")
    if "postgres_password" in {x["source"] for x in ing.get("secrets", [])}: bad("ingest: must not see the owner's password")
    if svcs["migrate"].get("command") != ["migrate"]: bad("migrate: command must be [migrate]")
    # Topics come from `sluice-ingest provision` (the one tool that creates them), with sluice-ingest's settings.
    init = svcs["kafka-init"]
    if (init.get("entrypoint") or [None])[0] not in (None, "/usr/local/bin/sluice-ingest") or (init.get("command") or [None])[0] != "provision":
        bad("kafka-init: must run `sluice-ingest provision` (the image's entrypoint, command [provision, …])")
    if "build" not in init and init.get("image") != ing.get("image"): bad("kafka-init: must use the sluice image")
    for k in (init.get("environment") or {}):
        if k.startswith("SLUICE_") and k not in ingest_keys: bad(f"kafka-init: {k} is not a sluice-ingest setting (ignored!)")
    for k in (svcs["producer"].get("environment") or {}):
        if k.startswith("SLUICE_") and k not in produce_keys: bad(f"producer: {k} is not read by sluice-produce")
    for name, sec in cfg.get("secrets", {}).items():
        if "file" not in sec or "/secrets/" not in sec["file"]: bad(f"secret {name} is not a file under infra/compose/secrets/")
    if svcs["ingest"].get("environment", {}).get("SLUICE_METRICS_ADDR", "").split(":")[0] != "0.0.0.0":
        bad("ingest: SLUICE_METRICS_ADDR must listen on 0.0.0.0 in a container")
    timeout = int(env.get("SLUICE_SHUTDOWN_TIMEOUT_MS", 20000)) / 1000
    grace = src["services"]["ingest"].get("stop_grace_period", "10s")
    if int(grace.rstrip("s")) < 2 * timeout + 5: bad(f"ingest: stop_grace_period {grace} < 2 x shutdown timeout + 5 s")
    if svcs["producer"].get("stop_signal", "SIGTERM") not in ("SIGTERM", "SIGINT"): bad("producer: stop_signal must be SIGTERM or SIGINT (what sluice-produce handles)")
    base = os.path.dirname(args[1])
    for name in ("prometheus", "grafana"):
        for v in svcs[name].get("volumes", []):
            if v["type"] == "bind" and not os.path.exists(v["source"]): bad(f"{name}: bind source {v['source']} missing")
    prom = yaml.safe_load(open(os.path.join(base, "prometheus/prometheus.yml")))
    targets = [t for sc in prom["scrape_configs"] for st in sc.get("static_configs", []) for t in st["targets"]]
    if "ingest:9464" not in targets: bad("prometheus does not scrape ingest:9464")
    # One rule file and one dashboard for every deployment: compose mounts the canonical ones.
    def binds(name):
        return {v["target"]: os.path.realpath(v["source"]) for v in svcs[name].get("volumes", []) if v["type"] == "bind"}
    if prom.get("rule_files") != ["/etc/prometheus/alerts.yml"]: bad("prometheus.yml: rule_files must be [/etc/prometheus/alerts.yml]")
    if binds("prometheus").get("/etc/prometheus/alerts.yml") != os.path.realpath("infra/prometheus/alerts.yml"):
        bad("prometheus: /etc/prometheus/alerts.yml must be infra/prometheus/alerts.yml (the one rule file)")
    provider = yaml.safe_load(open(os.path.join(base, "grafana/provisioning/dashboards/sluice.yml")))
    dash_dir = provider["providers"][0]["options"]["path"]
    if binds("grafana").get(dash_dir) != os.path.realpath("infra/grafana/dashboards"):
        bad(f"grafana: the dashboard provider's path {dash_dir} must be infra/grafana/dashboards (the one dashboard)")

elif mode == "k8s":
    docs = [d for d in yaml.safe_load_all(open(args[0])) if d]
    ingest_keys, _ = config_keys()
    by = {}
    for d in docs: by.setdefault(d["kind"], []).append(d)
    cm = {d["metadata"]["name"]: d["data"] for d in by.get("ConfigMap", [])}["sluice-ingest-config"]
    for k, v in cm.items():
        if k.startswith("SLUICE_") and k not in ingest_keys: bad(f"ConfigMap: {k} is not a sluice-ingest setting (ignored!)")
        if "PASSWORD" in k and not k.endswith("_FILE"): bad(f"ConfigMap: {k} is a secret")
        if re.search(r"://[^/@:]+:[^/@]+@", v): bad(f"ConfigMap: {k} embeds a password")
    timeout_s = int(cm.get("SLUICE_SHUTDOWN_TIMEOUT_MS", "20000")) / 1000
    topic_of = {"rank": cm.get("SLUICE_RANK_TOPIC", "rank-events"), "crawl": cm.get("SLUICE_CRAWL_TOPIC", "crawl-events"),
                "click": cm.get("SLUICE_CLICK_TOPIC", "click-events")}
    # StatefulSets: stable pod names are the static-membership ids (docs/operations.md, "Static membership").
    if by.get("Deployment"): bad("ingest runs as StatefulSets (stable pod names for group_instance_id), not Deployments")
    deps = {d["metadata"]["name"]: d for d in by.get("StatefulSet", [])}
    classes = {}
    if sorted(d["metadata"]["labels"].get("sluice.dev/class") for d in deps.values()) != ["click", "crawl", "rank"]:
        bad("want exactly one StatefulSet per class rank, crawl, click")
    groups = set()
    for name, d in deps.items():
        cls = d["metadata"]["labels"]["sluice.dev/class"]
        spec = d["spec"]["template"]["spec"]
        if not set(d["spec"]["selector"]["matchLabels"].items()) <= set(d["spec"]["template"]["metadata"]["labels"].items()):
            bad(f"{name}: selector does not match the pod labels")
        c = spec["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        for k in env:
            if k.startswith("SLUICE_") and k not in ingest_keys: bad(f"{name}: {k} is not a sluice-ingest setting (ignored!)")
            if "PASSWORD" in k and not k.endswith("_FILE"): bad(f"{name}: {k} passes a secret through the environment")
        kinds = env.get("SLUICE_KINDS", {}).get("value")
        group = env.get("SLUICE_GROUP_ID", {}).get("value")
        if kinds != cls: bad(f"{name}: SLUICE_KINDS={kinds!r}, want {cls!r}")
        if not group or group in groups: bad(f"{name}: SLUICE_GROUP_ID {group!r} missing or shared")
        groups.add(group)
        iid = (env.get("SLUICE_GROUP_INSTANCE_ID", {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        if iid != "metadata.name": bad(f"{name}: SLUICE_GROUP_INSTANCE_ID must come from the pod name (fieldRef metadata.name)")
        classes[name] = (cls, group, c)
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports.get("metrics") != 9464: bad(f"{name}: no container port 'metrics' 9464")
        for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live"), ("startupProbe", "/health/live")):
            g = (c.get(probe) or {}).get("httpGet") or {}
            if g.get("path") != path or g.get("port") not in ("metrics", 9464): bad(f"{name}: {probe} must GET {path} on the metrics port")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace < 2 * timeout_s + 5: bad(f"{name}: terminationGracePeriodSeconds {grace} < 2 x {timeout_s:.0f} s + 5 s")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(part, {}): bad(f"{name}: resources.{part}.{r} missing")
        buffered = int(env.get("SLUICE_MAX_BUFFERED_BYTES", {}).get("value", 512 * 2**20)) / 2**20
        if "memory" in res.get("limits", {}) and mib(res["limits"]["memory"]) < buffered + 384:
            bad(f"{name}: memory limit {res['limits']['memory']} < max_buffered_bytes ({buffered:.0f} MiB) + 384 MiB")
        psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
        if not psc.get("runAsNonRoot") or csc.get("allowPrivilegeEscalation") is not False or not csc.get("readOnlyRootFilesystem"):
            bad(f"{name}: must run as non-root, read-only root fs, no privilege escalation")
        if c["image"].endswith(":latest") or ":" not in c["image"].split("/")[-1]: bad(f"{name}: image {c['image']} not pinned")
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for key in ("SLUICE_POSTGRES_PASSWORD_FILE", "SLUICE_CLICKHOUSE_PASSWORD_FILE"):
            path = env.get(key, {}).get("value", "")
            ok = any(path.startswith(mp.rstrip("/") + "/") and "secret" in vols.get(vn, {}) for vn, mp in mounts.items())
            if not ok: bad(f"{name}: {key}={path!r} is not a file on a mounted Secret volume")
        if spec.get("automountServiceAccountToken") is not False: bad(f"{name}: automountServiceAccountToken should be false")
        if "envFrom" not in c or c["envFrom"][0]["configMapRef"]["name"] != "sluice-ingest-config": bad(f"{name}: envFrom ConfigMap missing")
        # Migrations as the owner in an init container; ingest as the writer, which may not run DDL.
        inits = {i["name"]: i for i in spec.get("initContainers", [])}
        mig = inits.get("migrate")
        if not mig or mig.get("args") != ["migrate"]: bad(f"{name}: no init container `migrate` running `sluice-ingest migrate`")
        else:
            menv = {e["name"]: e for e in mig.get("env", [])}
            ref = (menv.get("SLUICE_POSTGRES_URL", {}).get("valueFrom") or {}).get("configMapKeyRef", {})
            if ref.get("key") != "POSTGRES_OWNER_URL" or "POSTGRES_OWNER_URL" not in cm: bad(f"{name}: migrate must connect with POSTGRES_OWNER_URL")
            mmounts = {m["name"]: m["mountPath"] for m in mig.get("volumeMounts", [])}
            path = menv.get("SLUICE_POSTGRES_PASSWORD_FILE", {}).get("value", "")
            if not any(path.startswith(mp.rstrip("/") + "/") and "secret" in vols.get(vn, {}) for vn, mp in mmounts.items()):
                bad(f"{name}: migrate's SLUICE_POSTGRES_PASSWORD_FILE is not on a mounted Secret volume")
            if set(mmounts) & set(mounts): bad(f"{name}: the ingest container mounts the owner's credentials")
        if cm.get("SLUICE_MIGRATE_ON_START") != "false" or env.get("SLUICE_MIGRATE_ON_START", {}).get("value", "false") != "false":
            bad(f"{name}: SLUICE_MIGRATE_ON_START must be false (ingest runs as the writer; the init container migrates)")
    pdbs = {d["metadata"]["name"]: d for d in by.get("PodDisruptionBudget", [])}
    for name, d in deps.items():
        p = pdbs.get(name)
        if not p: bad(f"{name}: no PodDisruptionBudget"); continue
        if p["spec"]["selector"]["matchLabels"] != d["spec"]["selector"]["matchLabels"]: bad(f"{name}: PDB selector differs")
        if "maxUnavailable" not in p["spec"]: bad(f"{name}: PDB should use maxUnavailable (minAvailable blocks drains at 1 replica)")
    known_meta = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
                  "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag", "limitToPartitionsWithLag",
                  "version", "partitionLimitation", "sasl", "tls", "unsafeSsl"}
    sos = {d["metadata"]["name"]: d for d in by.get("ScaledObject", [])}
    for name, (cls, group, c) in classes.items():
        so = sos.get(name)
        if not so: bad(f"{name}: no ScaledObject"); continue
        s = so["spec"]
        if set(s) - {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount",
                     "idleReplicaCount", "advanced", "triggers", "fallback", "initialCooldownPeriod"}:
            bad(f"{name}: unknown ScaledObject spec fields {set(s)}")
        if s["scaleTargetRef"].get("name") != name or s["scaleTargetRef"].get("kind") != "StatefulSet":
            bad(f"{name}: ScaledObject targets {s['scaleTargetRef']}")
        parts = int(so["metadata"].get("annotations", {}).get("sluice.dev/topic-partitions", 0))
        if not 1 <= s.get("minReplicaCount", 0) <= s.get("maxReplicaCount", 100) <= parts:
            bad(f"{name}: need 1 <= minReplicaCount <= maxReplicaCount <= partitions ({parts})")
        for t in s["triggers"]:
            m = t.get("metadata", {})
            if t.get("type") != "kafka": bad(f"{name}: trigger type {t.get('type')}"); continue
            if set(m) - known_meta: bad(f"{name}: unknown kafka trigger metadata {set(m) - known_meta}")
            if any(not isinstance(v, str) for v in m.values()): bad(f"{name}: trigger metadata values must be strings")
            if m.get("consumerGroup") != group: bad(f"{name}: trigger consumerGroup {m.get('consumerGroup')!r} != SLUICE_GROUP_ID {group!r}")
            if m.get("topic") != topic_of[cls]: bad(f"{name}: trigger topic {m.get('topic')!r} != {topic_of[cls]!r}")
            if m.get("bootstrapServers") != cm.get("SLUICE_KAFKA_BROKERS"): bad(f"{name}: trigger bootstrapServers differ from SLUICE_KAFKA_BROKERS")
            if m.get("offsetResetPolicy") != cm.get("SLUICE_START_FROM", "earliest"): bad(f"{name}: offsetResetPolicy != SLUICE_START_FROM")
            if m.get("allowIdleConsumers", "false") != "false": bad(f"{name}: allowIdleConsumers must be false")
            v = tuple(int(x) for x in m.get("version", "1.0.0").split(".")[:2])
            if v < (2, 1): bad(f"{name}: kafka trigger version {m.get('version')} < 2.1 (Kafka 4 refuses older requests)")
            if int(m.get("lagThreshold", "0")) <= 0: bad(f"{name}: lagThreshold must be > 0")
    svc = [d for d in by.get("Service", []) if d["metadata"]["name"] == "sluice-ingest-metrics"]
    if not svc or svc[0]["spec"]["ports"][0].get("targetPort") != "metrics": bad("Service sluice-ingest-metrics must target port 'metrics'")
    elif not all(set(svc[0]["spec"]["selector"].items()) <= set(d["spec"]["template"]["metadata"]["labels"].items()) for d in deps.values()):
        bad("Service selector does not match every class")
    nps = by.get("NetworkPolicy", [])
    if len(nps) != 1: bad("want one NetworkPolicy")
    else:
        np_ = nps[0]["spec"]
        if set(np_.get("policyTypes", [])) != {"Ingress", "Egress"}: bad("NetworkPolicy must restrict Ingress and Egress")
        if not all(set(np_["podSelector"]["matchLabels"].items()) <= set(d["spec"]["template"]["metadata"]["labels"].items()) for d in deps.values()):
            bad("NetworkPolicy does not select every ingest pod")
        for rule in np_.get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            nss = [f.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") for f in rule.get("from", [])]
            if ports != {9464} or nss != ["monitoring"]: bad(f"NetworkPolicy ingress allows {ports} from {nss}")
        eports = {(p.get("protocol", "TCP"), p["port"], p.get("endPort", p["port"])) for r in np_.get("egress", []) for p in r.get("ports", [])}
        allowed = {("TCP", 9092, 9094), ("TCP", 5432, 5432), ("TCP", 8123, 8123), ("UDP", 53, 53), ("TCP", 53, 53)}
        if eports != allowed: bad(f"NetworkPolicy egress ports {sorted(eports)} != {sorted(allowed)}")
        if any(not r.get("ports") or not r.get("to") for r in np_.get("egress", [])): bad("NetworkPolicy egress rule without ports or peers")
    for d in docs:
        if d["kind"] == "Secret": bad(f"Secret {d['metadata']['name']} is part of the manifests; create it out of band")

elif mode == "snapshot":
    # The rendered objects equal the reviewed snapshot (args[1]), compared as parsed YAML: key order,
    # comments and formatting do not matter, every value does. VALIDATE_UPDATE_SNAPSHOT=1 rewrites it
    # (review its diff: it is the whole deployment as the cluster receives it).
    def objects(path):
        docs = [d for d in yaml.safe_load_all(open(path)) if d]
        return sorted(docs, key=lambda d: (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]))
    got = objects(args[0])
    if os.environ.get("VALIDATE_UPDATE_SNAPSHOT") == "1":
        with open(args[1], "w") as f:
            f.write("# The rendered Kubernetes manifests (`kubectl kustomize infra/k8s`), sorted by kind and name.\n"
                    "# infra/validate.sh checks the rendering against this file; after a deliberate change run\n"
                    "# VALIDATE_UPDATE_SNAPSHOT=1 bash infra/validate.sh and review the diff.\n")
            yaml.safe_dump_all(got, f, sort_keys=True, width=120)
    want = objects(args[1])
    if got != want:
        import difflib
        dump = lambda docs: yaml.safe_dump_all(docs, sort_keys=True, width=120).splitlines()
        bad("rendering differs from " + args[1] + " (VALIDATE_UPDATE_SNAPSHOT=1 to accept):\n" +
            "\n".join(difflib.unified_diff(dump(want), dump(got), "snapshot", "rendered", lineterm="", n=2)))
    else:
        print(f"{len(got)} objects equal to {args[1]}")

elif mode == "hpa":
    for d in yaml.safe_load_all(open(args[0])):
        if d["kind"] != "HorizontalPodAutoscaler": continue
        parts = int(d["metadata"]["annotations"]["sluice.dev/topic-partitions"])
        if not 1 <= d["spec"]["minReplicas"] <= d["spec"]["maxReplicas"] <= parts: bad("HPA replica range exceeds partitions")

elif mode == "env":
    # Env of one rendered StatefulSet as shell assignments, for `sluice-ingest config`.
    docs = [d for d in yaml.safe_load_all(open(args[0])) if d]
    cm = next(d["data"] for d in docs if d["kind"] == "ConfigMap")
    dep = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == args[1])
    env = dict(cm)
    env.update({e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e})
    for k, v in env.items(): print(f"{k}={v}")
    sys.exit(0)

elif mode == "compose-env":
    # Env of one compose service as shell assignments, for `sluice-ingest config`.
    svc = json.load(open(args[0]))["services"][args[1]]
    for k, v in (svc.get("environment") or {}).items(): print(f"{k}={v}")
    sys.exit(0)

elif mode == "xml":
    import xml.etree.ElementTree as ET
    for f in args:
        try: ET.parse(f)
        except ET.ParseError as e: bad(f"{f}: {e}")

elif mode == "rules":
    import promql_parser
    metric_names = set()
    for root in ("consumers/src", "aggregator/src", "aggregator/sinks/src"):
        for dp, _, fs in os.walk(root):
            for f in fs:
                if f.endswith(".rs"): metric_names |= set(re.findall(r'"(sluice_[a-z0-9_]+)"', open(os.path.join(dp, f)).read()))
    external = {"up"}
    def check_expr(where, expr):
        try:
            promql_parser.parse(expr)
        except Exception as e:
            bad(f"{where}: PromQL does not parse: {e}"); return
        for name in set(re.findall(r"\b(sluice_[a-z0-9_]+|kafka_[a-z0-9_]+|up)\b", expr)):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in external and name not in metric_names and base not in metric_names:
                bad(f"{where}: metric {name} is not defined in consumers/ or aggregator/")
    rules = yaml.safe_load(open(args[0]))
    ops = open(args[2]).read()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", ops, re.M)}
    names = set()
    for g in rules["groups"]:
        for r in g["rules"]:
            a = r.get("alert")
            if not a or a in names: bad(f"rule without a unique alert name: {a}")
            names.add(a)
            check_expr(a, r["expr"])
            if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"): bad(f"{a}: severity label")
            for key in ("summary", "description"):
                if not r.get("annotations", {}).get(key): bad(f"{a}: no {key} annotation")
            rb = r.get("annotations", {}).get("runbook", "")
            if not rb.startswith("docs/operations.md#") or rb.split("#", 1)[1] not in anchors:
                bad(f"{a}: runbook {rb!r} is not a heading of docs/operations.md")
    def concrete(expr):
        # Grafana's interval variables, then template variables (always inside =~ matchers).
        expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
        return re.sub(r"\$\{?(\w+)\}?", ".*", expr)
    dash = json.load(open(args[1]))
    exprs = 0
    for p in dash["panels"]:
        for t in p.get("targets", []):
            check_expr(f"dashboard panel {p['title']!r}", concrete(t["expr"])); exprs += 1
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if isinstance(q, str) and q.startswith("label_values("):
            check_expr(f"dashboard variable {v['name']!r}", concrete(q[len("label_values("):].rsplit(",", 1)[0])); exprs += 1
    if exprs < 20: bad(f"dashboard: only {exprs} expressions found")

else:
    bad(f"unknown mode {mode}")

for p in problems: print(p)
sys.exit(1 if problems else 0)
