//! The edge configuration from manifests: TLS Secrets that are missing, of another type or
//! invalid leave their hosts on the default certificate with a warning naming the Secret, and
//! change nothing else; backend ports by name and number; the redirect annotation.

use podnet_routes::edge::{config, Upstream};

const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: main, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Secret
metadata: {name: not-tls}
type: Opaque
stringData: {a: b}
---
apiVersion: v1
kind: Secret
metadata: {name: garbage}
type: kubernetes.io/tls
stringData: {tls.crt: "not a certificate", tls.key: "not a key"}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: i
  annotations: {podnet.dev/ssl-redirect: "false"}
spec:
  tls:
  - {hosts: [a.example.com], secretName: missing}
  - {hosts: [b.example.com], secretName: not-tls}
  - {hosts: [c.example.com], secretName: garbage}
  rules:
  - host: a.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {name: main}}}}]}
  - host: b.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
  - host: c.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 81}}}}]}
"#;

#[test]
fn bad_secrets_are_warned_about_and_change_nothing_else() {
    let docs = podnet_model::parse_documents("edge.yaml", MANIFESTS).unwrap();
    let cluster = podnet_emulator::build(&docs, &Default::default()).unwrap();
    let edge = config(&cluster);
    assert!(edge.certs.is_empty(), "{:?}", edge.certs);
    let w = edge.warnings.join("\n");
    for (secret, why) in [
        ("default/missing", "not found"),
        ("default/not-tls", "type Opaque"),
        ("default/garbage", "tls.crt"),
    ] {
        assert!(
            w.lines().any(|l| l.contains(secret)
                && l.contains(why)
                && l.contains("default certificate")),
            "{secret}: {w}"
        );
    }
    // The routes stand; port by name and by number reach the same endpoints; an unknown port
    // is a 503 with a warning.
    assert_eq!(edge.table.routes().len(), 3);
    let ready: Vec<_> = edge
        .upstreams
        .values()
        .filter_map(|u| match u {
            Upstream::Ready(e) => Some(e.clone()),
            Upstream::Unavailable(_) => None,
        })
        .collect();
    assert_eq!(ready.len(), 2, "{:?}", edge.upstreams);
    assert_eq!(ready[0], ready[1]);
    assert_eq!(ready[0].len(), 2);
    assert!(ready[0].iter().all(|a| a.port() == 8080));
    assert!(w.contains("has no port 81"), "{w}");
    // ssl-redirect "false": no host is redirected.
    assert!(edge.redirect.is_empty());
}
