#!/usr/bin/python3
"""check_deploy.py - the checks of deploy/ that need no container runtime or cluster.

usage: check_deploy.py container | compose | kubernetes | grafana | prometheus
       check_deploy.py --update-configmap   (rewrites deploy/kubernetes/configmap.yaml)

container   deploy/container/Dockerfile: stages, packages (the build stage's are the
            project's own, the runtime stage has the package of every library the built
            binaries link), users, the port, the health check, every COPY source present
            and inside the build context; the build stage's CMake configure run on exactly
            what it copies (PJ_DEPLOY_BUILD=1 also builds); the image's config and read
            models laid out as the image holds them and passed through `projector check`.
compose     deploy/compose.yaml: services, build targets, mounts, ports, health checks,
            environment, no literal password; the config as mounted, through `projector check`.
kubernetes  deploy/kubernetes/*.yaml read into the models of the Kubernetes Python client
            (python3-kubernetes: an unknown field or a wrong type fails), then what the
            deployment must have (probes, resources, non-root, read-only root, Secret
            references and no secret value), the ConfigMap equal to the files it carries,
            and its projector.yaml as mounted, through `projector check`.
grafana     deploy/grafana/projector.json: its structure, its variables, and every query
            parsed by promtool (as recording rules).
prometheus  deploy/prometheus: every alert has a severity, a summary and a description,
            and a test in alerts_test.yaml where it fires and then clears;
            `promtool check config` on prometheus.yml.

The metric names the dashboard and the alerts use are checked against a running daemon
by tests/integration/test_deploy.c. Prints what is wrong, one line each, and exits 1 if
anything is; the daemon binary is build/gcc/projector (PJ_DEPLOY_BIN to change).
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
BIN = os.environ.get("PJ_DEPLOY_BIN", os.path.join(ROOT, "build", "gcc", "projector"))
ERRORS = []


def fail(where, message):
    ERRORS.append(f"{os.path.relpath(where, ROOT)}: {message}")


def expect(cond, where, message):
    if not cond:
        fail(where, message)
    return cond


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ---- the daemon's own configuration ----

def config_env_names(text):
    """The ${NAME} references of a projector.yaml."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))


# Stand-ins for values that come from a Secret or the operator's shell.
PLACEHOLDERS = {"REDIS_URL": "redis://projector:placeholder@redis:6379/0"}


def placeholder_env(names, given=None):
    """names -> values: the given one unless it is a ${...} of compose, else a stand-in."""
    given = given or {}
    return {n: given[n] if n in given and "${" not in given[n] else PLACEHOLDERS.get(n, "x")
            for n in names}


def listen_port(config_path):
    with open(config_path, encoding="utf-8") as f:
        listen = yaml.safe_load(f)["http"]["listen"]
    return int(str(listen).rsplit(":", 1)[1])


def projector_check(where, layout, config, env):
    """Writes layout ({path in the container: text}) under a temporary root and runs
    `projector check --config ROOT/config` with env; the read models must load."""
    if not expect(os.access(BIN, os.X_OK), where, f"no daemon binary at {BIN} (build first)"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        for path, text in layout.items():
            dest = os.path.join(tmp, path.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(dest, 0o644)
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        full_env.update(env)
        r = run([BIN, "check", "--config", os.path.join(tmp, config.lstrip("/"))], env=full_env)
        expect(r.returncode == 0, where,
               f"`projector check` refused {config} as laid out there (exit {r.returncode}): "
               + (r.stdout + r.stderr).replace(tmp, "").strip())


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def readmodel_files():
    folder = os.path.join(ROOT, "readmodels")
    return {n: read_text(os.path.join(folder, n))
            for n in sorted(os.listdir(folder)) if n.endswith((".yaml", ".yml"))}


# ---- Dockerfile ----

class Stage:
    def __init__(self, image, name):
        self.image, self.name, self.instructions = image, name, []

    def all(self, keyword):
        return [args for k, args in self.instructions if k == keyword]

    def last(self, keyword):
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(path):
    """Stages of a Dockerfile: its instructions with continuation lines joined and comment
    lines dropped, as the builder reads them."""
    stages, logical = [], ""
    for raw in read_text(path).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        keyword, args, logical = keyword.upper(), args.strip(), ""
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            stages.append(Stage(m.group(1), m.group(2)))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args):
    return json.loads(args) if args.startswith("[") else ["/bin/sh", "-c", args]


def apt_packages(stage):
    pkgs = []
    for args in stage.all("RUN"):
        for m in re.finditer(r"apt-get install ((?:[^&;|]|\\\n)*)", args):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


def base_image(stages, stage):
    by_name = {s.name: s for s in stages if s.name}
    while stage.image in by_name:
        stage = by_name[stage.image]
    return stage.image


def project_packages():
    r = run(["bash", "-c", ". tests/lib/common.sh && echo $PJ_PACKAGES"], cwd=ROOT)
    return set(r.stdout.split())


def needed_packages(binary):
    """Debian packages of the shared libraries binary links directly (not libc6)."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        run(["readelf", "-d", binary]).stdout)
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", run(["ldd", binary]).stdout, re.M))
    pkgs = set()
    for lib in needed:
        real = os.path.realpath(paths.get(lib, lib))
        owner = run(["dpkg", "-S", real]).stdout.split(":")[0]
        if owner and owner != "libc6":
            pkgs.add(owner)
    return pkgs


def dockerignore_allows(ignore, src):
    """The Dockerfile's .dockerignore here is "*" and "!path" lines: src is sent when a
    "!" pattern names it or a folder holding it."""
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    src = src.rstrip("/")
    return any(src == a or src.startswith(a + "/") for a in allowed)


def copies(stage):
    """(from, sources, dest) of each COPY of the stage."""
    out = []
    for args in stage.all("COPY"):
        words = shlex.split(args)
        frm = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
        paths = [w for w in words if not w.startswith("--")]
        out.append((frm, paths[:-1], paths[-1]))
    return out


def image_layout(stage, overrides=None):
    """{container path: text} of the files that COPY puts under /etc/projector."""
    layout = {}
    for frm, sources, dest in copies(stage):
        if frm is not None or not dest.startswith("/etc/projector"):
            continue
        for src in sources:
            full = os.path.join(ROOT, src)
            if os.path.isdir(full):
                for n in sorted(os.listdir(full)):
                    layout[os.path.join(dest, n)] = read_text(os.path.join(full, n))
            else:
                layout[dest] = read_text(full)
    for dest, src in (overrides or {}).items():
        layout = {p: t for p, t in layout.items() if not (p == dest or p.startswith(dest + "/"))}
        if os.path.isdir(src):
            for n in sorted(os.listdir(src)):
                layout[os.path.join(dest, n)] = read_text(os.path.join(src, n))
        else:
            layout[dest] = read_text(src)
    return layout


def check_build_context(path, build, ignore):
    """Runs the build stage's CMake configure on exactly what the stage copies."""
    cmake_run = next((a for a in build.all("RUN") if "cmake -S" in a), None)
    if not expect(cmake_run, path, "the build stage runs no `cmake -S`"):
        return None
    targets = re.search(r"--target\s+([\w ]+?)\s*(?:&&|$)", cmake_run)
    targets = targets.group(1).split() if targets else []
    with tempfile.TemporaryDirectory() as tmp:
        src_dir = os.path.join(tmp, "src")
        os.makedirs(src_dir)
        for _, sources, dest in copies(build):
            for src in sources:
                full, dest_dir = os.path.join(ROOT, src), os.path.join(src_dir, dest)
                if os.path.isdir(full):
                    shutil.copytree(full, dest_dir, dirs_exist_ok=True)
                else:
                    os.makedirs(dest_dir, exist_ok=True)
                    shutil.copy(full, dest_dir)
        configure, _, build_cmd = cmake_run.partition("&&")
        if os.environ.get("PJ_DEPLOY_BUILD") != "1":
            build_cmd = "cmake --build build --target help"
        r = run(["sh", "-c", f"{configure} && {build_cmd}"], cwd=src_dir)
        if not expect(r.returncode == 0, path,
                      f"the build stage's CMake fails on what it copies: {r.stderr[-800:]}"):
            return targets
        for t in targets:
            if os.environ.get("PJ_DEPLOY_BUILD") == "1":
                expect(os.path.exists(os.path.join(src_dir, "build", t)), path,
                       f"the build made no build/{t}")
            else:
                expect(re.search(rf"^\.\.\. {re.escape(t)}$", r.stdout, re.M), path,
                       f"CMake has no target \"{t}\" in the build stage")
    return targets


def check_container():
    path = os.path.join(DEPLOY, "container", "Dockerfile")
    ignore = read_text(path + ".dockerignore").splitlines()
    stages = parse_dockerfile(path)
    names = {s.name: s for s in stages}
    if not expect(set(names) >= {"build", "base", "sample", "runtime"}, path,
                  f"stages build, base, sample and runtime expected, found {list(names)}"):
        return
    build, base, sample, runtime = (names[n] for n in ("build", "base", "sample", "runtime"))
    expect(build.image == "debian:12", path, "the build stage must start from debian:12")
    expect(stages[-1] is runtime, path, "runtime must be the last stage (the default target)")
    for s in (base, sample, runtime):
        expect(base_image(stages, s) == "debian:12-slim", path,
               f"stage {s.name} must be based on debian:12-slim")
    expect("-DCMAKE_BUILD_TYPE=Release" in " ".join(build.all("RUN")), path,
           "the build stage must build with CMAKE_BUILD_TYPE=Release")

    mine = project_packages()
    for p in apt_packages(build):
        expect(p in mine, path, f"build package \"{p}\" is not in PJ_PACKAGES (tests/lib/common.sh)")
    runtime_pkgs = set(apt_packages(base))
    for binary in ("projector", "feed"):
        built = os.path.join(ROOT, "build", "gcc", binary)
        if not expect(os.path.exists(built), path, f"no build/gcc/{binary} to read the libraries of"):
            continue
        for p in sorted(needed_packages(built) - runtime_pkgs):
            fail(path, f"{binary} links a library of \"{p}\", which the base stage does not install")
    expect("curl" in runtime_pkgs, path, "the HEALTHCHECK's curl must be installed in the base stage")
    redis_cli = shutil.which("redis-cli")
    if redis_cli:
        owner = run(["dpkg", "-S", os.path.realpath(redis_cli)]).stdout.split(":")[0]
        expect(owner in apt_packages(sample), path,
               f"publish-sample.sh runs redis-cli: the sample stage must install \"{owner}\"")

    # Every source copied from the context exists and is sent.
    for s in stages:
        for frm, sources, dest in copies(s):
            for src in sources:
                if frm is None:
                    expect(os.path.exists(os.path.join(ROOT, src)), path, f"COPY {src}: no such path")
                    expect(dockerignore_allows(ignore, src), path,
                           f"COPY {src}: left out of the context by Dockerfile.dockerignore")
    targets = check_build_context(path, build, ignore) or []
    workdir = build.last("WORKDIR") or "/"
    for s in (sample, runtime):
        for frm, sources, dest in copies(s):
            if frm != "build":
                continue
            for src in sources:
                expect(src.startswith(workdir + "/build/") and os.path.basename(src) in targets,
                       path, f"COPY --from=build {src}: not a target the build stage builds")

    # A non-root user, the one base creates, in every stage that runs something.
    uid = re.search(r"useradd .*--uid (\d+)", " ".join(base.all("RUN")))
    for s in (sample, runtime):
        user = s.last("USER")
        expect(user and uid and user.split(":")[0] == uid.group(1) and user.split(":")[0] != "0",
               path, f"stage {s.name} must run as the non-root user base creates (USER {user})")

    # The port, the health check and the command agree with the image's config.
    config = os.path.join(DEPLOY, "container", "projector.yaml")
    port = listen_port(config)
    expect(runtime.last("EXPOSE") == str(port), path, f"EXPOSE must be {port}, the config's port")
    health = runtime.last("HEALTHCHECK") or ""
    expect(f"http://127.0.0.1:{port}/healthz" in health and "curl" in health, path,
           f"HEALTHCHECK must curl http://127.0.0.1:{port}/healthz")
    entry = exec_form(runtime.last("ENTRYPOINT") or "[]")
    cmd = exec_form(runtime.last("CMD") or "[]")
    copied = {dest: srcs for frm, srcs, dest in copies(runtime) if frm == "build"}
    expect(entry and entry[0] in copied, path, "ENTRYPOINT must run the binary the stage copies")
    layout = image_layout(runtime)
    expect(cmd[:2] == ["run", "--config"] and cmd[2] in layout, path,
           "CMD must be `run --config` with the config file the stage copies")
    sample_entry = exec_form(sample.last("ENTRYPOINT") or "[]")
    sample_copied = {dest: srcs for frm, srcs, dest in copies(sample)}
    expect(sample_entry and sample_entry[0] in sample_copied, path,
           "the sample stage's ENTRYPOINT must run a file it copies")
    script = os.path.join(DEPLOY, "container", "publish-sample.sh")
    expect(os.access(script, os.X_OK), script, "must be executable")
    r = run(["sh", "-n", script])
    expect(r.returncode == 0, script, f"sh -n: {r.stderr.strip()}")
    feed_file = re.search(r"FEED_FILE:-([^}]+)\}", read_text(script)).group(1)
    expect(feed_file in sample_copied, script,
           f"its default FEED_FILE {feed_file} is not where the sample stage copies the feed")

    projector_check(path, layout, cmd[2], placeholder_env(config_env_names(read_text(config))))
    r = run(["/usr/bin/python3", os.path.join(ROOT, "tests", "schema_check.py"),
             os.path.join(ROOT, "schemas", "config.schema.json"), config])
    expect(r.returncode == 0, config, f"schemas/config.schema.json: {r.stdout}{r.stderr}")


# ---- compose ----

def check_compose():
    path = os.path.join(DEPLOY, "compose.yaml")
    doc = load_yaml_docs(path)[0]
    services = doc.get("services", {})
    if not expect(set(services) >= {"redis", "postgres", "projector", "sample"}, path,
                  "services redis, postgres, projector and sample expected"):
        return
    stages = {}
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            context = os.path.normpath(os.path.join(DEPLOY, build["context"]))
            dockerfile = os.path.join(context, build["dockerfile"])
            if expect(os.path.isfile(dockerfile), path, f"{name}: no Dockerfile {dockerfile}"):
                stages[name] = {s.name: s for s in parse_dockerfile(dockerfile)}
                expect(build.get("target") in stages[name], path,
                       f"{name}: no stage \"{build.get('target')}\" in {build['dockerfile']}")
        for dep, cond in (svc.get("depends_on") or {}).items():
            if not expect(dep in services, path, f"{name} depends on unknown service {dep}"):
                continue
            if cond.get("condition") == "service_healthy":
                target = services[dep].get("build", {}).get("target")
                has_check = "healthcheck" in services[dep] or (
                    dep in stages and stages[dep][target].last("HEALTHCHECK"))
                expect(has_check, path, f"{name} waits for {dep} to be healthy: it has no health check")
        for key in ("POSTGRES_PASSWORD", "PGPASSWORD", "REDIS_PASSWORD"):
            value = (svc.get("environment") or {}).get(key)
            expect(value is None or str(value).startswith("${"), path,
                   f"{name}: {key} must come from the environment, not be written here")

    proj = services["projector"]
    runtime = stages.get("projector", {}).get("runtime")
    if runtime is None:
        return
    overrides = {}
    for mount in proj.get("volumes", []):
        src, dest = mount.split(":")[:2]
        if src.startswith("."):
            full = os.path.normpath(os.path.join(DEPLOY, src))
            if expect(os.path.exists(full), path, f"projector mounts {src}: no such path"):
                overrides[dest] = full
    layout = image_layout(runtime, overrides)
    config = exec_form(runtime.last("CMD"))[2]
    expect(config in overrides, path, f"projector should mount its config at {config}")
    expect(any(p.startswith("/etc/projector/readmodels/") for p in layout) and
           "/etc/projector/readmodels" in overrides, path,
           "projector should mount the shipped read models at /etc/projector/readmodels")
    port = listen_port(overrides.get(config, os.path.join(DEPLOY, "container", "projector.yaml")))
    expect(any(str(p).endswith(f":{port}") for p in proj.get("ports", [])), path,
           f"projector should publish the config's port {port}")
    env = {k: str(v) for k, v in (proj.get("environment") or {}).items()}
    for name in sorted(config_env_names(layout[config]) - set(env)):
        fail(path, f"projector's config needs ${{{name}}}, which its environment does not set")
    projector_check(path, layout, config, placeholder_env(env, env))


# ---- Kubernetes ----

KINDS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
}


def k8s_same(a, b, where):
    """Where the document and its round trip through the client's model differ: an unknown
    field is dropped, a wrong type comes back converted."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k not in b:
                yield f"{where}.{k}: unknown field"
            else:
                yield from k8s_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from k8s_same(x, y, f"{where}[{i}]")
    elif a != b or type(a) is not type(b):
        yield f"{where}: {a!r} is not of the type the API expects"


def k8s_validate(path, doc):
    from kubernetes import client
    api = client.ApiClient()
    klass = KINDS.get((doc.get("apiVersion"), doc.get("kind")))
    if not expect(klass, path, f"unexpected kind {doc.get('apiVersion')}/{doc.get('kind')}"):
        return
    try:
        model = api._ApiClient__deserialize(doc, klass)
    except (ValueError, TypeError) as e:
        fail(path, f"{doc['kind']}: {e}")
        return
    back = api.sanitize_for_serialization(model)
    for problem in k8s_same(doc, back, doc["kind"]):
        fail(path, problem)


def configmap_text():
    lines = ["# deploy/kubernetes/configmap.yaml - the daemon's config (deploy/container/projector.yaml)",
             "# and the shipped read models (readmodels/), as deployment.yaml mounts them.",
             "# Written by `python3 tests/check_deploy.py --update-configmap`; the test command",
             "# fails when it differs from those files.",
             "apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: projector-config",
             "  labels:", "    app.kubernetes.io/name: projector", "data:"]
    files = {"projector.yaml": read_text(os.path.join(DEPLOY, "container", "projector.yaml"))}
    files.update(readmodel_files())
    for name, text in files.items():
        lines.append(f"  {name}: |")
        lines += [("    " + line).rstrip() for line in text.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"


def check_deployment(path, dep, dockerfile_stages):
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    port_names = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for probe, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        get = (c.get(probe) or {}).get("httpGet", {})
        expect(get.get("path") == want and get.get("port") in port_names, path,
               f"{probe} must GET {want} on a named container port")
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        expect({"cpu", "memory"} <= set(res.get(kind, {})), path, f"resources.{kind}: cpu and memory")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    expect(psc.get("runAsNonRoot") is True, path, "pod securityContext.runAsNonRoot must be true")
    expect(csc.get("readOnlyRootFilesystem") is True, path, "readOnlyRootFilesystem must be true")
    expect(csc.get("allowPrivilegeEscalation") is False, path, "allowPrivilegeEscalation must be false")
    expect("ALL" in csc.get("capabilities", {}).get("drop", []), path, "capabilities must drop ALL")
    expect(dep["spec"].get("strategy", {}).get("type") == "Recreate", path,
           "strategy Recreate: a second pod cannot become ready while the first holds the locks")
    for e in c.get("env", []):
        if re.search(r"PASSWORD|TOKEN|SECRET|REDIS_URL", e["name"]):
            ref = e.get("valueFrom", {}).get("secretKeyRef", {})
            expect("value" not in e and ref.get("name") and ref.get("key"), path,
                   f"env {e['name']} must reference a Secret by name and key, not hold a value")
    runtime = dockerfile_stages["runtime"]
    uid = runtime.last("USER").split(":")[0]
    expect(str(psc.get("runAsUser")) == uid, path, f"runAsUser must be the image's user {uid}")
    expect(c.get("command") == exec_form(runtime.last("ENTRYPOINT")), path,
           "command must be the image's ENTRYPOINT")
    config = exec_form(runtime.last("CMD"))[2]
    expect(c.get("args") == exec_form(runtime.last("CMD")), path, "args must be the image's CMD")
    config_port = listen_port(os.path.join(DEPLOY, "container", "projector.yaml"))
    expect(config_port in port_names.values(), path, f"the container port must be {config_port}")
    return pod, c, config


def check_kubernetes():
    folder = os.path.join(DEPLOY, "kubernetes")
    files = sorted(n for n in os.listdir(folder) if n.endswith(".yaml"))
    kust = load_yaml_docs(os.path.join(folder, "kustomization.yaml"))[0]
    expect(sorted(kust.get("resources", [])) == sorted(set(files) - {"kustomization.yaml"}),
           os.path.join(folder, "kustomization.yaml"), "resources must list every other file here")
    docs = {}
    for n in files:
        if n == "kustomization.yaml":
            continue
        for doc in load_yaml_docs(os.path.join(folder, n)):
            expect(doc.get("kind") != "Secret", os.path.join(folder, n), "no Secret is committed")
            k8s_validate(os.path.join(folder, n), doc)
            docs[doc.get("kind")] = (os.path.join(folder, n), doc)
    if not expect(set(docs) >= {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"},
                  folder, f"Deployment, Service, ConfigMap and PodDisruptionBudget expected, found {list(docs)}"):
        return
    cm_path, cm = docs["ConfigMap"]
    expect(read_text(cm_path) == configmap_text(), cm_path,
           "differs from deploy/container/projector.yaml and readmodels/ "
           "(python3 tests/check_deploy.py --update-configmap)")
    carried = {"projector.yaml": read_text(os.path.join(DEPLOY, "container", "projector.yaml"))}
    carried.update(readmodel_files())
    for name, text in carried.items():
        expect(cm.get("data", {}).get(name) == text, cm_path, f"data.{name} differs from its file")
    dep_path, dep = docs["Deployment"]
    stages = {s.name: s for s in parse_dockerfile(os.path.join(DEPLOY, "container", "Dockerfile"))}
    pod, c, config = check_deployment(dep_path, dep, stages)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    expect(dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), dep_path,
           "the selector must match the pod's labels")
    svc_path, svc = docs["Service"]
    expect(svc["spec"]["selector"].items() <= labels.items(), svc_path, "selector must match the pods")
    names = {p["name"] for p in c["ports"]}
    for p in svc["spec"]["ports"]:
        expect(p["targetPort"] in names, svc_path, f"targetPort {p['targetPort']} is no container port")
    pdb_path, pdb = docs["PodDisruptionBudget"]
    expect(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), pdb_path,
           "selector must match the pods")

    # The config volume as the pod sees it, through `projector check`.
    layout = {}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        cmap = volumes.get(m["name"], {}).get("configMap")
        if not expect(cmap and cmap["name"] == cm["metadata"]["name"], dep_path,
                      f"volume {m['name']} should be the ConfigMap {cm['metadata']['name']}"):
            continue
        for item in cmap.get("items", []):
            if expect(item["key"] in cm["data"], dep_path, f"ConfigMap has no key {item['key']}"):
                layout[os.path.join(m["mountPath"], item["path"])] = cm["data"][item["key"]]
    for name in readmodel_files():
        expect(os.path.join("/etc/projector/readmodels", name) in layout, dep_path,
               f"read model {name} is not mounted")
    env = placeholder_env([e["name"] for e in c.get("env", [])],
                          {e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    if expect(config in layout, dep_path, f"nothing mounted at {config}"):
        for name in sorted(config_env_names(layout[config]) - set(env)):
            fail(dep_path, f"the config needs ${{{name}}}, which the container's env does not set")
        projector_check(dep_path, layout, config, env)


# ---- Grafana ----

GRAFANA_BUILTINS = {"__rate_interval": "5m", "__range": "1h", "__interval": "1m"}


def grafana_panels(panels):
    for p in panels:
        yield p
        yield from grafana_panels(p.get("panels", []))


def check_grafana():
    path = os.path.join(DEPLOY, "grafana", "projector.json")
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    expect(dash.get("uid") and dash.get("title") and dash.get("schemaVersion"), path,
           "uid, title and schemaVersion expected")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    expect(variables.get("datasource", {}).get("type") == "datasource", path,
           "a datasource variable is expected")
    exprs, ids = [], set()
    for v in variables.values():
        if v["type"] == "query":
            exprs.append((f"variable {v['name']}", v["definition"]))
    for p in grafana_panels(dash.get("panels", [])):
        expect(p["id"] not in ids, path, f"panel id {p['id']} is used twice")
        ids.add(p["id"])
        g = p.get("gridPos", {})
        expect(g.get("w", 0) > 0 and g.get("h", 0) > 0 and g.get("x", 0) + g.get("w", 0) <= 24,
               path, f"panel \"{p['title']}\": gridPos outside the 24 columns")
        if p.get("type") == "row":
            continue
        for t in [p] + p.get("targets", []):
            ds = t.get("datasource", {})
            expect(ds.get("uid") == "${datasource}", path,
                   f"panel \"{p['title']}\" must use the ${{datasource}} variable")
        for t in p.get("targets", []):
            exprs.append((f"panel \"{p['title']}\" {t['refId']}", t["expr"]))
    expect(len(exprs) >= 10, path, f"only {len(exprs)} queries found")
    rules = []
    for where, expr in exprs:
        for name in re.findall(r"\$\{?(\w+)", expr):
            expect(name in variables or name in GRAFANA_BUILTINS, path,
                   f"{where}: ${name} is no variable of the dashboard")
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", expr)
        if m:
            expect(m.group(2) in ("instance", "readmodel"), path, f"{where}: label {m.group(2)}?")
            expr = m.group(1)
        expr = re.sub(r"\$\{?(\w+)\}?", lambda v: GRAFANA_BUILTINS.get(v.group(1), ".*"), expr)
        rules.append({"record": f"grafana_query_{len(rules)}", "expr": expr})
    text = " ".join(e for _, e in exprs)
    for metric in ("projector_lag_entries", "projector_lag_seconds", "projector_events_applied_total",
                   "projector_dead_letters_total", "projector_readmodel_state",
                   "projector_last_poll_age_seconds", "projector_wait_pending"):
        expect(metric in text, path, f"no panel shows {metric}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}, f)
        f.flush()
        r = run(["promtool", "check", "rules", f.name])
        names = "".join(f"\n  grafana_query_{i}: {where}" for i, (where, _) in enumerate(exprs))
        expect(r.returncode == 0, path,
               f"promtool does not parse its queries: {r.stdout}{r.stderr}{names}")


# ---- Prometheus ----

def check_prometheus():
    folder = os.path.join(DEPLOY, "prometheus")
    alerts_path, test_path = os.path.join(folder, "alerts.yaml"), os.path.join(folder, "alerts_test.yaml")
    alerts = [r for g in load_yaml_docs(alerts_path)[0]["groups"] for r in g["rules"] if "alert" in r]
    tests = load_yaml_docs(test_path)[0]
    evals = {}
    for t in tests["tests"]:
        for e in t.get("alert_rule_test", []):
            evals.setdefault(e["alertname"], []).append((e["eval_time"], bool(e.get("exp_alerts"))))
    minutes = lambda d: int(d.rstrip("m"))
    for a in alerts:
        name = a["alert"]
        expect(a.get("labels", {}).get("severity") in ("critical", "warning", "info"), alerts_path,
               f"{name}: severity critical, warning or info expected")
        expect({"summary", "description"} <= set(a.get("annotations", {})), alerts_path,
               f"{name}: summary and description expected")
        seen = sorted(evals.get(name, []), key=lambda e: minutes(e[0]))
        fired = [t for t, firing in seen if firing]
        cleared = [t for t, firing in seen if not firing and fired and minutes(t) > minutes(fired[0])]
        expect(fired and cleared, test_path, f"{name}: no test where it fires and then clears")
    r = run(["promtool", "check", "config", os.path.join(folder, "prometheus.yml")])
    expect(r.returncode == 0, folder, f"promtool check config: {r.stdout}{r.stderr}")


CHECKS = {"container": check_container, "compose": check_compose,
          "kubernetes": check_kubernetes, "grafana": check_grafana,
          "prometheus": check_prometheus}


def main(argv):
    if argv == ["--update-configmap"]:
        with open(os.path.join(DEPLOY, "kubernetes", "configmap.yaml"), "w", encoding="utf-8") as f:
            f.write(configmap_text())
        return 0
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(__doc__.split("\n\n")[0].split("\n", 1)[1], file=sys.stderr)
        return 2
    CHECKS[argv[0]]()
    for e in ERRORS:
        print(e)
    if not ERRORS:
        print(f"deploy {argv[0]}: OK")
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
