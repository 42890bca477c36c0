#!/usr/bin/env bash
# The demo (as root): a 3-node lab from the seeds' examples (examples/seeds). It prints the plan,
# builds the lab, shows its pods, probes every pod from every pod (the seeds' NetworkPolicies
# enforced), sends a request across nodes, reaches my-service through the service proxy and by
# name through the lab's kube-dns, shows an allowed and a denied connection with `podnet
# explain`'s answer for each, then removes the lab. KEEP=1 leaves it up to
# explore (then: podnet lab down --name demo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p podnet
P=target/release/podnet
echo "== podnet check -f examples/seeds   (the plan; no root needed)"
$P check -f examples/seeds
echo
$P lab down --name demo >/dev/null   # an earlier demo's lab, if one was kept
echo "== podnet lab up --name demo -f examples/seeds"
$P lab up --name demo -f examples/seeds
[ "${KEEP:-0}" = 1 ] || trap '$P lab down --name demo' EXIT
echo
echo "== podnet lab status --name demo"
$P lab status --name demo
echo
echo "== kubectl against the lab's Kubernetes API (podnet lab kubeconfig; every node runs podnet agent against it)"
kc=$($P lab kubeconfig --name demo)
kubectl --kubeconfig "$kc" get nodes -o wide
kubectl --kubeconfig "$kc" get svc,endpointslices,networkpolicies -A
echo
echo "== podnet lab probe --name demo --port 8080   (. reached, X not: my-app, my-api and my-web serve 8080; the seeds' policies let only frontends reach my-app there, and my-app reach nothing)"
$P lab probe --name demo --port 8080
client_node=$($P lab status --name demo -o json | python3 -c 'import json,sys; print([p["node"] for p in json.load(sys.stdin)["pods"] if p["name"]=="client"][0])')
far=$($P lab status --name demo -o json | python3 -c "import json,sys; print([p['ip'] for p in json.load(sys.stdin)['pods'] if p['name'].startswith('my-api-') and p['node']!='$client_node'][0])")
frontend=$($P lab status --name demo -o json | python3 -c 'import json,sys; print([p["name"] for p in json.load(sys.stdin)["pods"] if p["name"].startswith("frontend-")][0])')
trusted=$($P lab status --name demo -o json | python3 -c 'import json,sys; print([p["name"] for p in json.load(sys.stdin)["pods"] if p["name"].startswith("trusted-app-")][0])')
app=$($P lab status --name demo -o json | python3 -c 'import json,sys; print([p["name"] for p in json.load(sys.stdin)["pods"] if p["name"].startswith("my-app-")][0])')
echo
echo "== podnet lab exec --name demo default/client -- curl -s http://$far:8080/   (across nodes, over VXLAN; clientIP is the client pod's own)"
$P lab exec --name demo default/client -- curl -s "http://$far:8080/"
echo
vip=$($P check -f examples/seeds -o json | python3 -c 'import json,sys; print([s["clusterIPs"][0] for s in json.load(sys.stdin)["services"] if s["name"]=="my-service"][0])')
echo
echo "== my-service (port 80 -> targetPort 8080) by its ClusterIP $vip, six times from $frontend: the service proxy spreads them over the my-app pods"
for _ in 1 2 3 4 5 6; do $P lab exec --name demo "default/$frontend" -- curl -s "http://$vip/hostname"; echo; done
echo
echo "== what node-0's proxy programs for it (podnet check --proxy node-0)"
$P check -f examples/seeds --proxy node-0 2>/dev/null | grep -E "FRONTEND|my-service"
echo
echo "== cluster DNS: the client pod's resolv.conf (dnsPolicy ClusterFirst), written by the lab as the kubelet would"
$P lab exec --name demo default/client -- cat /etc/resolv.conf
echo
echo "== podnet lab exec --name demo default/client -- getent hosts my-service.default   (glibc's resolver, through the search path)"
$P lab exec --name demo default/client -- getent hosts my-service.default
echo
echo "== podnet lab exec --name demo default/$frontend -- curl -s http://my-service/hostname   (the short name, from the same namespace)"
$P lab exec --name demo "default/$frontend" -- curl -s http://my-service/hostname
echo
echo
echo "== NetworkPolicy: $trusted -> $app:80 is allowed (podnet explain says why), and the packets agree"
$P explain -f examples/seeds "default/$trusted" "default/$app:80"; echo
$P lab exec --name demo "default/$trusted" -- curl -s -m 2 "http://$($P lab status --name demo -o json | python3 -c "import json,sys; print([p['ip'] for p in json.load(sys.stdin)['pods'] if p['name']=='$app'][0])"):80/hostname"
echo
echo
echo "== NetworkPolicy: client -> $app:80 is denied (podnet explain says why), and the packets agree"
$P explain -f examples/seeds default/client "default/$app:80"; echo
if $P lab exec --name demo default/client -- curl -s -m 2 "http://$($P lab status --name demo -o json | python3 -c "import json,sys; print([p['ip'] for p in json.load(sys.stdin)['pods'] if p['name']=='$app'][0])"):80/hostname"; then
  echo "(unexpected: it got through)"; exit 1
else
  echo "(no answer: dropped)"
fi
echo
echo
echo "== dig from the pod: a PTR, and the dns-version record of the spec"
$P lab exec --name demo default/client -- dig +short -x "$vip"
$P lab exec --name demo default/client -- dig +short dns-version.cluster.local TXT
echo
echo "== the zone the lab serves (podnet check --dns; a test asserts the server answers exactly this)"
$P check -f examples/seeds --dns 2>/dev/null | grep -E "my-service|dns-version|kube-dns.kube-system.svc.cluster.local. .* A "
echo
addr=$(kubectl --kubeconfig "$kc" get ingress my-ingress -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
ca=$(mktemp)
python3 -c 'import base64,re,sys; t=open("examples/seeds/tls-secret.yaml").read(); print(base64.b64decode(re.search(r"tls.crt: (\S+)", t).group(1)).decode())' > "$ca"
echo "== Ingress: the seeds' my-ingress, served by podnet's controller (Deployment podnet-system/podnet-ingress) at $addr"
kubectl --kubeconfig "$kc" get ingress -A
echo
echo "== from external: curl --resolve my-app.example.com:443:$addr --cacert <the seeds' certificate> https://my-app.example.com/api, then /web"
$P lab exec --name demo external -- curl -sS --resolve "my-app.example.com:443:$addr" --cacert "$ca" https://my-app.example.com/api; echo
$P lab exec --name demo external -- curl -sS --http2 --resolve "my-app.example.com:443:$addr" --cacert "$ca" https://my-app.example.com/web -w '\n(HTTP/%{http_version})\n'
echo
echo "== plain HTTP to a host with TLS: 308 to HTTPS"
$P lab exec --name demo external -- curl -sS -o /dev/null -w '%{http_code} -> %{redirect_url}\n' --resolve "my-app.example.com:80:$addr" http://my-app.example.com/api
echo
echo "== Gateway API: the same app as a Gateway and HTTPRoutes (examples/gateway), applied live"
$P lab apply --name demo -f examples/seeds -f examples/gateway
kubectl --kubeconfig "$kc" get gateways,httproutes -A
gw=$(kubectl --kubeconfig "$kc" get gateway my-gateway -o jsonpath='{.status.addresses[0].value}')
echo
echo "== the Gateway's own proxy and address ($gw): the routes as podnet check shows them"
$P check -f examples/seeds -f examples/gateway 2>/dev/null | sed -n '/^GATEWAYS/,$p'
echo
echo "== from external, through the Gateway: https://my-app.example.com/api, and plain HTTP redirected"
$P lab exec --name demo external -- curl -sS --resolve "my-app.example.com:443:$gw" --cacert "$ca" https://my-app.example.com/api; echo
$P lab exec --name demo external -- curl -sS -o /dev/null -w '%{http_code} -> %{redirect_url}\n' --resolve "my-app.example.com:80:$gw" http://my-app.example.com/web
rm -f "$ca"
