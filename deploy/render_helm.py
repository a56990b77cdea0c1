#!/usr/bin/env python3
"""Renders and checks deploy/helm/floorcast where `helm` is not installable (no Debian
package; only package registries are reachable here). It implements the part of Helm's Go
templates the chart uses — `.Values/.Release/.Chart` paths, `if`/`else`/`else if`/`with`/
`define`/`end`, `include`, `quote`, `nindent`, `indent`, `toYaml`, `toJson`, `default`,
`required`, `not`, `and`, `or`, `eq`, `ne`, `lt`, `int`, `.Files.Get`,
`.Capabilities.APIVersions.Has` (the API versions come from `--api-versions`, as with
`helm template`), and the `{{-`/`-}}` whitespace trimming — then parses every document and
checks what a node needs
(host network, probes, a grace period longer than the drain, the secret, the ServiceMonitor,
and with coturn.enabled the coturn container and the peers its turnserver.conf denies).

  python3 deploy/render_helm.py [-f values.yaml] [--set a.b=c ...] [--release NAME]
      [--api-versions monitoring.coreos.com/v1/ServiceMonitor ...] [--quiet]

Prints the rendered YAML; exits 1 with the reason on any failure. `helm template` remains the
reference where helm exists (deploy/check-packaging.sh runs both then).
"""
import argparse
import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent / "helm" / "floorcast"

# Peers coturn must never relay to, as coturn ranges: private, loopback, link-local, CGNAT,
# documentation, benchmarking, multicast and reserved IPv4; and in IPv6 the unspecified and
# loopback addresses, the forms that embed an IPv4 address (mapped, NAT64, 6to4, Teredo),
# unique-local, link-local and multicast. Checked in the chart's and Compose's
# turnserver.conf (deploy/check-packaging.sh).
REQUIRED_DENIED_PEERS = [
    "0.0.0.0-0.255.255.255",
    "10.0.0.0-10.255.255.255",
    "100.64.0.0-100.127.255.255",
    "127.0.0.0-127.255.255.255",
    "169.254.0.0-169.254.255.255",
    "172.16.0.0-172.31.255.255",
    "192.0.0.0-192.0.0.255",
    "192.0.2.0-192.0.2.255",
    "192.88.99.0-192.88.99.255",
    "192.168.0.0-192.168.255.255",
    "198.18.0.0-198.19.255.255",
    "198.51.100.0-198.51.100.255",
    "203.0.113.0-203.0.113.255",
    "224.0.0.0-239.255.255.255",
    "240.0.0.0-255.255.255.255",
    "::-::1",
    "::ffff:0.0.0.0-::ffff:255.255.255.255",
    "64:ff9b::-64:ff9b::ffff:ffff",
    "64:ff9b:1::-64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
    "100::-100::ffff:ffff:ffff:ffff",
    "2001::-2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
    "2002::-2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "ff00::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
]


def coturn_problems(conf, where):
    """What a turnserver.conf lacks to keep relays off private and special ranges."""
    lines = {line.strip() for line in conf.splitlines()}
    problems = [f"{where}: no denied-peer-ip={r}" for r in REQUIRED_DENIED_PEERS
                if f"denied-peer-ip={r}" not in lines]
    for flag in ("use-auth-secret", "no-multicast-peers", "no-tcp-relay"):
        if flag not in lines:
            problems.append(f"{where}: no {flag}")
    if any(line.startswith("allow-loopback-peers") for line in lines):
        problems.append(f"{where}: allow-loopback-peers")
    return problems
ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


class TemplateError(Exception):
    pass


# ------------------------------------------------------------------ parsing

def lex(src):
    """Text and actions, with {{- and -}} trimming applied to the neighbouring text."""
    out, pos, trim_next = [], 0, False
    for m in ACTION.finditer(src):
        text = src[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", m.group(2)))
        trim_next = bool(m.group(3))
        pos = m.end()
    text = src[pos:]
    out.append(("text", text.lstrip() if trim_next else text))
    return out


def parse(tokens, i=0):
    """A list of nodes up to a closing `end` or an `else`; returns (nodes, next index, the
    closing action)."""
    nodes = []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
        elif value.startswith("/*"):
            continue
        elif value == "end" or value == "else" or value.startswith("else "):
            return nodes, i, value
        elif value.split(" ", 1)[0] in ("if", "with", "define"):
            word, arg = value.split(" ", 1)
            body, i, closer = parse(tokens, i)
            otherwise = []
            if word == "if":
                otherwise, i = parse_else(tokens, closer, i)
            nodes.append((word, arg, body, otherwise))
        else:
            nodes.append(("expr", value))
    return nodes, i, None


def parse_else(tokens, closer, i):
    """The else branch of an `if` whose body ended with `closer` (`end`, `else` or
    `else if …`), and the index after the `if`'s `end`."""
    if closer == "end":
        return [], i
    if closer == "else":
        body, i, _ = parse(tokens, i)
        return body, i
    arg = closer[len("else if "):]
    body, i, closer = parse(tokens, i)
    rest, i = parse_else(tokens, closer, i)
    return [("if", arg, body, rest)], i


def split_words(expr):
    """Words of a command: quoted strings, parenthesised sub-pipelines, plain words."""
    words, i = [], 0
    while i < len(expr):
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == '"':
            j = i + 1
            while expr[j] != '"':
                j += 2 if expr[j] == "\\" else 1
            words.append(("str", json.loads(expr[i:j + 1])))
            i = j + 1
        elif c == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(expr[j], 0)
                j += 1
            words.append(("pipe", expr[i + 1:j - 1]))
            i = j
        else:
            j = i
            while j < len(expr) and not expr[j].isspace() and expr[j] not in '()"':
                j += 1
            words.append(("word", expr[i:j]))
            i = j
    return words


def split_pipe(expr):
    parts, depth, quoted, cur = [], 0, False, ""
    for c in expr:
        if c == '"' and not cur.endswith("\\"):
            quoted = not quoted
        if not quoted:
            depth += {"(": 1, ")": -1}.get(c, 0)
        if c == "|" and depth == 0 and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return [p.strip() for p in parts]


# ------------------------------------------------------------------ evaluation

def truthy(v):
    return v not in (None, False, 0, "", [], {})


def to_yaml(v):
    if v in ({}, []):
        return json.dumps(v)
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=False).rstrip("\n")


class Renderer:
    def __init__(self, root):
        self.root = root
        self.defines = {}

    def value(self, word, dot):
        kind, w = word
        if kind == "str":
            return w
        if kind == "pipe":
            return self.pipeline(w, dot)
        if w == ".":
            return dot
        if w.startswith("."):
            cur = self.root if w.split(".")[1] in ("Values", "Release", "Chart", "Capabilities") else dot
            for key in w.strip(".").split("."):
                cur = cur.get(key) if isinstance(cur, dict) else None
            return cur
        if re.fullmatch(r"-?\d+", w):
            return int(w)
        return self.call(w, [], dot)

    def call(self, fn, args, dot, piped=None):
        vals = [self.value(a, dot) for a in args]
        if piped is not None:
            vals.append(piped[0])
        if fn == "include":
            name, scope = vals
            return self.render(self.defines[name], scope)
        if fn == "quote":
            return json.dumps("" if vals[0] is None else str(vals[0]))
        if fn == "nindent":
            n, s = vals
            return "\n" + "\n".join((" " * n + line) if line else line for line in str(s).split("\n"))
        if fn == "toYaml":
            return to_yaml(vals[0])
        if fn == "toJson":
            return json.dumps(vals[0])
        if fn == "default":
            fallback, v = vals
            return v if truthy(v) else fallback
        if fn == "required":
            msg, v = vals
            if not truthy(v):
                raise TemplateError(msg)
            return v
        if fn == "not":
            return not truthy(vals[0])
        if fn == "and":
            for v in vals:
                if not truthy(v):
                    return v
            return vals[-1]
        if fn == "or":
            for v in vals:
                if truthy(v):
                    return v
            return vals[-1]
        if fn == "eq":
            return vals[0] == vals[1]
        if fn == "ne":
            return vals[0] != vals[1]
        if fn == "lt":
            return vals[0] < vals[1]
        if fn == "int":
            return int(vals[0] or 0)
        if fn == "indent":
            n, s = vals
            return "\n".join((" " * n + line) if line else line for line in str(s).split("\n"))
        if fn == ".Capabilities.APIVersions.Has":
            return vals[0] in self.root["Capabilities"]["APIVersions"]
        if fn == ".Files.Get":
            path = CHART / vals[0]
            return path.read_text() if path.is_file() else ""
        raise TemplateError(f"unsupported function {fn!r}")

    def pipeline(self, expr, dot):
        result = None
        for n, cmd in enumerate(split_pipe(expr)):
            words = split_words(cmd)
            head = words[0]
            method = head[0] == "word" and head[1] in (".Capabilities.APIVersions.Has", ".Files.Get")
            if method or (head[0] == "word" and not head[1].startswith(".") and not re.fullmatch(r"-?\d+", head[1])):
                result = self.call(head[1], words[1:], dot, None if n == 0 else (result,))
            elif n == 0 and len(words) == 1:
                result = self.value(head, dot)
            else:
                raise TemplateError(f"cannot evaluate {cmd!r}")
        return result

    def render(self, nodes, dot):
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "expr":
                v = self.pipeline(node[1], dot)
                out.append("" if v is None else (v if isinstance(v, str) else
                                                 json.dumps(v) if isinstance(v, (bool, list, dict)) else str(v)))
            elif node[0] == "define":
                self.defines[json.loads(node[1])] = node[2]
            elif node[0] == "if":
                if truthy(self.pipeline(node[1], dot)):
                    out.append(self.render(node[2], dot))
                else:
                    out.append(self.render(node[3], dot))
            elif node[0] == "with":
                v = self.pipeline(node[1], dot)
                if truthy(v):
                    out.append(self.render(node[2], v))
        return "".join(out)


# ------------------------------------------------------------------ values and checks

def merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def set_value(values, assignment):
    path, raw = assignment.split("=", 1)
    cur = values
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = yaml.safe_load(raw) if raw else ""


def render_chart(values, release, api_versions=()):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    root = {
        "Values": values,
        "Release": {"Name": release, "Namespace": "default"},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
        "Capabilities": {"APIVersions": ["v1", "apps/v1", "networking.k8s.io/v1", *api_versions]},
    }
    r = Renderer(root)
    r.render(parse(lex((CHART / "templates" / "_helpers.tpl").read_text()))[0], root)
    docs = {}
    for path in sorted((CHART / "templates").glob("*.yaml")):
        text = r.render(parse(lex(path.read_text()))[0], root)
        docs[path.name] = text
    return docs


def check(docs, values, release, api_versions=()):
    problems, objects = [], []
    for name, text in docs.items():
        try:
            for doc in yaml.safe_load_all(text):
                if doc is None:
                    continue
                for key in ("apiVersion", "kind"):
                    if key not in doc:
                        problems.append(f"{name}: no {key}")
                if not (doc.get("metadata") or {}).get("name"):
                    problems.append(f"{name}: no metadata.name")
                objects.append(doc)
        except yaml.YAMLError as e:
            problems.append(f"{name}: not YAML: {e}")
    # The node's own objects (a coturn sidecar's are checked below).
    fullname = f"{release}-floorcast"
    kinds = {o["kind"]: o for o in objects
             if "kind" in o and (o.get("metadata") or {}).get("name") == fullname}
    dep = kinds.get("Deployment")
    if not dep:
        problems.append("no Deployment")
    else:
        spec = dep["spec"]["template"]["spec"]
        c = spec["containers"][0]
        if spec.get("hostNetwork") is not True:
            problems.append("the pod does not use the host network (WebRTC media)")
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            problems.append("readiness probe is not /readyz")
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            problems.append("liveness probe is not /healthz")
        grace = spec.get("terminationGracePeriodSeconds", 0)
        drain = values["config"]["drain_timeout_seconds"]
        if not isinstance(grace, int) or grace <= drain:
            problems.append(f"terminationGracePeriodSeconds {grace} is not longer than the drain ({drain} s)")
        env = {e["name"]: e for e in c.get("env", [])}
        if "secretKeyRef" not in env.get("FLOORCAST_JWT_SECRET", {}).get("valueFrom", {}):
            problems.append("FLOORCAST_JWT_SECRET does not come from a Secret")
    cm = kinds.get("ConfigMap")
    if not cm or "floorcast.toml" not in cm.get("data", {}):
        problems.append("no ConfigMap with floorcast.toml")
    elif "secret" in cm["data"]["floorcast.toml"]:
        problems.append("the ConfigMap holds a secret")
    if not values["secrets"]["existingSecret"]:
        sec = kinds.get("Secret")
        if not sec or not sec.get("stringData", {}).get("jwt_secret"):
            problems.append("no Secret with jwt_secret")
    if dep and cm:
        problems += check_coturn(dep, cm, values)
    problems += check_monitoring(kinds, values, api_versions)
    problems += check_https(dep, cm, kinds, values)
    return problems, objects


RULES = Path(__file__).resolve().parent / "prometheus" / "rules.yml"
DASHBOARD = Path(__file__).resolve().parent / "grafana" / "floorcast.json"


def check_monitoring(kinds, values, api_versions):
    """ServiceMonitor and PrometheusRule exactly when enabled and their CRD exists (a plain
    cluster refuses objects of unknown kinds), scraping as the job the rules and the
    dashboard select."""
    problems = []
    for kind, key in (("ServiceMonitor", "serviceMonitor"), ("PrometheusRule", "prometheusRule")):
        want = values[key]["enabled"] and f"monitoring.coreos.com/v1/{kind}" in api_versions
        if want and kind not in kinds:
            problems.append(f"{key}.enabled and the CRD exists, but no {kind}")
        if not want and kind in kinds:
            problems.append(f"a {kind} although {key}.enabled is false or the cluster has no such CRD")
    jobs = set(re.findall(r'job="([^"]+)"', RULES.read_text()))
    jobs |= set(re.findall(r'job=\\"([^"\\]+)\\"', DASHBOARD.read_text()))
    if len(jobs) != 1:
        problems.append(f"the rules and the dashboard select several jobs: {sorted(jobs)}")
    sm = kinds.get("ServiceMonitor")
    svc = kinds.get("Service")
    if sm and svc:
        label = sm["spec"].get("jobLabel")
        job = (svc["metadata"].get("labels") or {}).get(label) if label else svc["metadata"]["name"]
        if {job} != jobs:
            problems.append(f"the ServiceMonitor's job is {job!r}, the rules and dashboard select {sorted(jobs)}")
    rule = kinds.get("PrometheusRule")
    if rule and rule.get("spec") != yaml.safe_load(RULES.read_text()):
        problems.append("the PrometheusRule differs from deploy/prometheus/rules.yml (copy it to files/rules.yml)")
    return problems


def check_https(dep, cm, kinds, values):
    """The node serves HTTPS with the mounted Secret, or an Ingress does in front of it."""
    problems = []
    secret = values["tls"]["secretName"]
    toml = cm["data"]["floorcast.toml"] if cm else ""
    c = dep["spec"]["template"]["spec"]["containers"][0] if dep else {}
    if secret:
        if 'tls_cert = "/etc/floorcast-tls/tls.crt"' not in toml or 'tls_key = "/etc/floorcast-tls/tls.key"' not in toml:
            problems.append("tls.secretName but floorcast.toml sets no tls_cert/tls_key")
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        if mounts.get("tls") != "/etc/floorcast-tls" or vols.get("tls", {}).get("secret", {}).get("secretName") != secret:
            problems.append(f"the Secret {secret} is not mounted at /etc/floorcast-tls")
        for probe in ("readinessProbe", "livenessProbe"):
            if c.get(probe, {}).get("httpGet", {}).get("scheme") != "HTTPS":
                problems.append(f"{probe} is not HTTPS although the node serves HTTPS")
    elif "tls_cert" in toml:
        problems.append("tls_cert set without tls.secretName")
    ing = kinds.get("Ingress")
    if values["ingress"]["enabled"]:
        if not ing:
            problems.append("ingress.enabled but no Ingress")
        else:
            notes = ing["metadata"].get("annotations") or {}
            issuer = values["ingress"]["clusterIssuer"]
            if issuer and notes.get("cert-manager.io/cluster-issuer") != issuer:
                problems.append("the Ingress lacks cert-manager's cluster-issuer annotation")
            if not ing["spec"].get("tls"):
                problems.append("the Ingress serves no TLS")
            if secret and notes.get("nginx.ingress.kubernetes.io/backend-protocol") != "HTTPS":
                problems.append("the node speaks HTTPS but the Ingress would send it HTTP")
    elif ing:
        problems.append("an Ingress although ingress.enabled is false")
    return problems


def check_coturn(dep, cm, values):
    """With coturn.enabled: a second container on the pod's host network whose secret comes
    from the Secret, allowed to relay to its node only, with the denied peers in its config."""
    problems = []
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    if not values.get("coturn", {}).get("enabled"):
        if "coturn" in containers or "turnserver.conf" in cm.get("data", {}):
            problems.append("coturn rendered although coturn.enabled is false")
        return problems
    c = containers.get("coturn")
    if not c:
        return ["coturn.enabled but no coturn container"]
    args = c.get("args", [])
    if "--allowed-peer-ip=$(NODE_IP)" not in args:
        problems.append("coturn may not relay to its own node (no --allowed-peer-ip=$(NODE_IP))")
    if not any(a.endswith("/turnserver.conf") for a in args):
        problems.append("coturn does not read turnserver.conf")
    env = {e["name"]: e for e in c.get("env", [])}
    if "secretKeyRef" not in env.get("TURN_SECRET", {}).get("valueFrom", {}):
        problems.append("coturn's secret does not come from a Secret")
    tls_port = values["coturn"].get("tlsPort")
    tls_args = {"--tls-listening-port", "--cert", "--pkey"}
    given = {a.split("=", 1)[0] for a in args}
    if tls_port:
        if f"--tls-listening-port={tls_port}" not in args or not tls_args <= given:
            problems.append(f"coturn.tlsPort {tls_port} but no TLS listener with a certificate")
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        if mounts.get("coturn-tls") != "/etc/coturn/tls":
            problems.append("coturn's certificate is not mounted at /etc/coturn/tls")
        sc = c.get("securityContext", {})
        if tls_port < 1024 and "NET_BIND_SERVICE" not in sc.get("capabilities", {}).get("add", []):
            problems.append(f"coturn cannot bind port {tls_port} (no NET_BIND_SERVICE)")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append("coturn keeps capabilities it does not need")
    elif given & tls_args or "--no-tls" not in args:
        problems.append("coturn.tlsPort is 0 but coturn listens with TLS")
    conf = cm.get("data", {}).get("turnserver.conf")
    if conf is None:
        problems.append("coturn.enabled but no turnserver.conf in the ConfigMap")
    else:
        problems += coturn_problems(conf, "the chart's turnserver.conf")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-f", "--values", action="append", default=[])
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--release", default="conf")
    ap.add_argument("--api-versions", action="append", default=[],
                    help="an API the cluster serves, as group/version/Kind (as helm template takes it)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in a.values:
        merge(values, yaml.safe_load(Path(f).read_text()) or {})
    for s in a.set:
        set_value(values, s)
    try:
        docs = render_chart(values, a.release, a.api_versions)
    except TemplateError as e:
        print(f"render_helm: {e}", file=sys.stderr)
        return 1
    problems, objects = check(docs, values, a.release, a.api_versions)
    if not a.quiet:
        for name, text in docs.items():
            print(f"---\n# Source: floorcast/templates/{name}\n{text.strip()}")
    for p in problems:
        print(f"render_helm: {p}", file=sys.stderr)
    if not problems:
        print(f"render_helm: {len(objects)} objects rendered and checked: "
              + ", ".join(sorted(o['kind'] for o in objects)), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
