//! `permgate integrate nginx|caddy|traefik|envoy`: prints the proxy configuration that delegates the decision
//! to a permgate decision listener, and the `gateway.yaml` lines that listener needs. The snippets are the
//! documentation (the README shows them) and the tests run the real nginx and Caddy on exactly this output.
//!
//! Each snippet does four things the decision relies on: it names the original request with the listener's
//! header family (set by the proxy, replacing anything the client sent); it sets `X-Forwarded-For` to the
//! client's address (so a client cannot choose the IP a token's condition is checked against); it copies
//! the identity headers permgate answers with to the upstream request; and it removes the client's
//! credential headers before the upstream (permgate's `forward_credentials: true` is the way to keep them).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

/// The proxy to print a configuration for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proxy {
    /// nginx (or ingress-nginx) with `auth_request`: an `http { }` server block.
    Nginx,
    /// Caddy with `forward_auth`: a Caddyfile site block.
    Caddy,
    /// Traefik with the `forwardAuth` middleware: a dynamic configuration file (YAML).
    Traefik,
    /// Envoy with the `ext_authz` filter (gRPC service; `--http` for the HTTP service): a static config.
    Envoy,
}

/// `permgate integrate`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct IntegrateArgs {
    /// The proxy in front of your API.
    #[arg(value_enum)]
    pub proxy: Proxy,
    /// Where the proxy listens for clients.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where permgate's decision listener for this proxy listens (default: 127.0.0.1:9191 for nginx,
    /// :9192 for Caddy and Traefik, :9193 for Envoy's HTTP service, :9194 for its gRPC service).
    #[arg(long)]
    pub decision: Option<SocketAddr>,
    /// Your API: where the proxy forwards allowed requests.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    pub upstream: String,
    /// Envoy only: use the `ext_authz` HTTP service instead of the gRPC one.
    #[arg(long)]
    pub http: bool,
}

/// Prints the snippet (exit 0), or why it cannot (exit 2).
pub fn run(args: &IntegrateArgs) -> ExitCode {
    match snippet(args) {
        Ok(text) => {
            super::print_out(&text);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("permgate integrate: {message}");
            ExitCode::from(2)
        }
    }
}

/// The API the proxy forwards allowed requests to, from `--upstream` (`http://host:port`, an origin only).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Api {
    scheme: &'static str,
    host: String,
    /// The URL's port, or its scheme's default.
    port: u16,
}

impl Api {
    fn parse(upstream: &str) -> Result<Self, String> {
        let uri: http::Uri = upstream.parse().map_err(|_| {
            format!("--upstream {upstream:?} is not a URL like http://127.0.0.1:9000")
        })?;
        let scheme = match uri.scheme_str() {
            Some("http") => "http",
            Some("https") => "https",
            _ => {
                return Err(format!(
                    "--upstream {upstream:?} is not an http:// or https:// URL"
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--upstream {upstream:?} has no host"))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!(
                "--upstream {upstream:?}: give the API's origin only (no path)"
            ));
        }
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Self {
            scheme,
            host: authority.host().to_string(),
            port,
        })
    }

    /// `host:port`, as the proxies name it.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The configuration text for `args`.
pub fn snippet(args: &IntegrateArgs) -> Result<String, String> {
    let api = Api::parse(&args.upstream)?;
    let (protocol, default_port) = match (args.proxy, args.http) {
        (Proxy::Nginx, _) => ("auth_request", 9191),
        (Proxy::Caddy | Proxy::Traefik, _) => ("forward_auth", 9192),
        (Proxy::Envoy, true) => ("ext_authz_http", 9193),
        (Proxy::Envoy, false) => ("ext_authz_grpc", 9194),
    };
    if args.http && args.proxy != Proxy::Envoy {
        return Err("--http is for envoy only".into());
    }
    let decision = args
        .decision
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)));
    let listen = args.listen;
    let gateway_lines = format!(
        "# permgate's gateway.yaml needs this decision listener, and the proxy's address in trusted_proxies:\n\
         #   decision:\n\
         #     - {{ listen: {decision}, protocol: {protocol} }}\n\
         #   trusted_proxies: [127.0.0.1/32]   # the address the proxy connects to permgate from\n"
    );
    let text = match args.proxy {
        Proxy::Nginx => nginx(listen, decision, &api),
        Proxy::Caddy => caddy(listen, decision, &api),
        Proxy::Traefik => traefik(listen, decision, &args.upstream),
        Proxy::Envoy if args.http => envoy_http(listen, decision, &api),
        Proxy::Envoy => envoy_grpc(listen, decision, &api),
    };
    Ok(format!("{gateway_lines}{text}"))
}

fn nginx(listen: SocketAddr, decision: SocketAddr, api: &Api) -> String {
    // With an upstream block, nginx would send its name as Host and as the TLS server name: name the API's
    // own authority instead, as `proxy_pass {scheme}://{upstream}` would.
    let (scheme, upstream) = (api.scheme, api.authority());
    let tls_name = if scheme == "https" {
        format!(
            "\n        proxy_ssl_server_name on;\n        proxy_ssl_name {};",
            api.host
        )
    } else {
        String::new()
    };
    format!(
        r#"# nginx with auth_request (nginx-light, nginx-full and ingress-nginx have the module): put these blocks
# in nginx's http {{ }} block. Every request is decided by permgate first; an allowed one goes to the
# API with permgate's identity headers and without the client's credential, a denied one gets permgate's
# Cloudflare envelope and status.
# Kept-alive connections to permgate and to the API: without an upstream block's keepalive (and HTTP/1.1),
# nginx opens a new connection for every decision subrequest and every proxied request.
upstream permgate_decision {{
    server {decision};
    keepalive 32;
}}
upstream permgate_api {{
    server {upstream};
    keepalive 32;
}}
server {{
    listen {listen};

    location / {{
        auth_request /.permgate-decision;
        auth_request_set $permgate_principal $upstream_http_x_permgate_principal;
        auth_request_set $permgate_token_id $upstream_http_x_permgate_token_id;
        auth_request_set $permgate_account $upstream_http_x_permgate_account;
        auth_request_set $permgate_request_id $upstream_http_x_request_id;
        auth_request_set $permgate_status $upstream_http_x_permgate_status;
        auth_request_set $permgate_envelope $upstream_http_x_permgate_envelope;
        # permgate answers every denial 403 (all auth_request passes on), with the real status and the envelope
        # in headers: this gives the client both.
        error_page 403 = @permgate_denied;

        proxy_pass {scheme}://permgate_api;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host {upstream};{tls_name}
        proxy_set_header X-Permgate-Principal $permgate_principal;
        proxy_set_header X-Permgate-Token-Id $permgate_token_id;
        proxy_set_header X-Permgate-Account $permgate_account;
        proxy_set_header X-Request-Id $permgate_request_id;
        proxy_set_header X-Forwarded-For $remote_addr;
        # The client's credential stays here (permgate's forward_credentials: true is ignored by this line).
        proxy_set_header Authorization "";
        proxy_set_header X-Auth-Key "";
        proxy_set_header X-Auth-Email "";
    }}

    location = /.permgate-decision {{
        internal;
        proxy_pass http://permgate_decision;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        # The original request, named by nginx (replacing anything the client sent under these names).
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Method $request_method;
        # The client's address, as nginx saw it (a client-sent X-Forwarded-For is not passed on).
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Request-Id $request_id;
    }}

    location @permgate_denied {{
        default_type application/json;
        add_header X-Request-Id $permgate_request_id always;
        if ($permgate_status = 400) {{
            return 400 $permgate_envelope;
        }}
        return 403 $permgate_envelope;
    }}
}}
"#
    )
}

fn caddy(listen: SocketAddr, decision: SocketAddr, api: &Api) -> String {
    let (scheme, upstream) = (api.scheme, api.authority());
    let ip = listen.ip();
    let port = listen.port();
    let transport = if scheme == "https" {
        "\n\t\ttransport http {\n\t\t\ttls\n\t\t}"
    } else {
        ""
    };
    format!(
        r#"# Caddy (2.6 or later) with forward_auth: a Caddyfile site block. Every request is decided by permgate
# first; permgate's denial (its Cloudflare envelope and status) goes to the client as it is.
http://:{port} {{
	bind {ip}
	forward_auth {decision} {{
		uri /
		# Caddy sets X-Forwarded-Method and X-Forwarded-Uri itself, and X-Forwarded-For to the client's
		# address (a client's own X-Forwarded-* are not passed on unless Caddy trusts it).
		header_up X-Request-Id {{http.request.uuid}}
		copy_headers X-Permgate-Principal X-Permgate-Token-Id X-Permgate-Account X-Request-Id
	}}
	reverse_proxy {upstream} {{
		# The client's credential stays here (permgate's forward_credentials: true is ignored by these).
		header_up -Authorization
		header_up -X-Auth-Key
		header_up -X-Auth-Email{transport}
	}}
}}
"#
    )
}

fn traefik(listen: SocketAddr, decision: SocketAddr, upstream_url: &str) -> String {
    format!(
        r#"# Traefik (v2 or v3) with the forwardAuth middleware: a dynamic configuration file (file provider), with
# an entry point "web" on {listen} in the static configuration:
#   entryPoints:
#     web:
#       address: "{listen}"
http:
  routers:
    api:
      rule: PathPrefix(`/`)
      entryPoints: [web]
      middlewares: [permgate-request-id, permgate, permgate-strip-credentials]
      service: api
  middlewares:
    # Traefik names no request id itself, and permgate adopts the one the proxy in front sends: drop the
    # client's, so that permgate names the request (and a client cannot choose the id in your logs).
    permgate-request-id:
      headers:
        customRequestHeaders:
          X-Request-Id: ""
    permgate:
      forwardAuth:
        address: http://{decision}/
        # Traefik names the original request in X-Forwarded-Method / -Uri; never believe the client's.
        trustForwardHeader: false
        authResponseHeaders:
          - X-Permgate-Principal
          - X-Permgate-Token-Id
          - X-Permgate-Account
          - X-Request-Id
    # The client's credential stays here (permgate's forward_credentials: true is ignored by this).
    permgate-strip-credentials:
      headers:
        customRequestHeaders:
          Authorization: ""
          X-Auth-Key: ""
          X-Auth-Email: ""
  services:
    api:
      loadBalancer:
        servers:
          - url: {upstream_url}
"#
    )
}

/// The listener, route, upstream cluster and permgate's cluster shared by both Envoy forms; `filter` is the
/// ext_authz filter, `cluster_options` what permgate's cluster adds for its form.
fn envoy(
    listen: SocketAddr,
    api: &Api,
    filter: &str,
    decision: SocketAddr,
    cluster_options: &str,
) -> String {
    let decision_cluster = format!(
        r#"    - name: permgate
      type: STATIC
{cluster_options}      load_assignment:
        cluster_name: permgate
        endpoints:
          - lb_endpoints:
              - endpoint: {{ address: {{ socket_address: {{ address: {ip}, port_value: {port} }} }} }}
"#,
        ip = decision.ip(),
        port = decision.port(),
    );
    let (upstream_host, upstream_port) = (&api.host, api.port);
    format!(
        r#"# Envoy (v3 API) with the ext_authz filter: a static bootstrap. Every request is decided by permgate
# first; failure_mode_allow stays false (an unreachable permgate denies).
static_resources:
  listeners:
    - name: api
      address:
        socket_address: {{ address: {ip}, port_value: {port} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: api
                # Envoy sets X-Forwarded-For to the client's address: what permgate checks a token's IP
                # condition against.
                use_remote_address: true
                route_config:
                  virtual_hosts:
                    - name: api
                      domains: ["*"]
                      routes:
                        - match: {{ prefix: "/" }}
                          route: {{ cluster: api }}
                http_filters:
{filter}
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: api
      type: STRICT_DNS
      load_assignment:
        cluster_name: api
        endpoints:
          - lb_endpoints:
              - endpoint: {{ address: {{ socket_address: {{ address: {upstream_host}, port_value: {upstream_port} }} }} }}
{decision_cluster}"#,
        ip = listen.ip(),
        port = listen.port(),
    )
}

fn envoy_grpc(listen: SocketAddr, decision: SocketAddr, api: &Api) -> String {
    let filter = r#"                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      failure_mode_allow: false
                      grpc_service:
                        envoy_grpc: { cluster_name: permgate }
                        timeout: 1s"#;
    // The gRPC service speaks HTTP/2 to permgate.
    let options = r#"      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: { http2_protocol_options: {} }
"#;
    envoy(listen, api, filter, decision, options)
}

fn envoy_http(listen: SocketAddr, decision: SocketAddr, api: &Api) -> String {
    let filter = r#"                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      failure_mode_allow: false
                      http_service:
                        server_uri: { uri: "http://permgate", cluster: permgate, timeout: 1s }
                        authorization_request:
                          allowed_headers:
                            patterns:
                              - { exact: authorization }
                              - { exact: x-auth-key }
                              - { exact: x-auth-email }
                              - { exact: x-forwarded-for }
                              - { exact: x-request-id }
                              - { exact: x-http-method-override }
                              - { exact: x-http-method }
                              - { exact: x-method-override }
                              - { exact: x-original-url }
                              - { exact: x-rewrite-url }
                              - { prefix: x-permgate }
                        authorization_response:
                          allowed_upstream_headers:
                            patterns:
                              - { exact: x-permgate-principal }
                              - { exact: x-permgate-token-id }
                              - { exact: x-permgate-account }
                              - { exact: x-request-id }
                          allowed_client_headers:
                            patterns:
                              - { exact: content-type }
                              - { exact: x-request-id }"#;
    envoy(listen, api, filter, decision, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(proxy: Proxy) -> IntegrateArgs {
        IntegrateArgs {
            proxy,
            listen: "127.0.0.1:8080".parse().unwrap(),
            decision: None,
            upstream: "http://127.0.0.1:9000".into(),
            http: false,
        }
    }

    #[test]
    fn each_snippet_names_its_listener_and_protocol() {
        for (proxy, http, protocol, port) in [
            (Proxy::Nginx, false, "auth_request", 9191),
            (Proxy::Caddy, false, "forward_auth", 9192),
            (Proxy::Traefik, false, "forward_auth", 9192),
            (Proxy::Envoy, true, "ext_authz_http", 9193),
            (Proxy::Envoy, false, "ext_authz_grpc", 9194),
        ] {
            let text = snippet(&IntegrateArgs {
                http,
                ..args(proxy)
            })
            .unwrap();
            assert!(
                text.contains(&format!("listen: 127.0.0.1:{port}, protocol: {protocol}")),
                "{text}"
            );
            assert!(text.contains("9000"), "{proxy:?}: the upstream");
            assert!(!text.contains("failure_mode_allow: true"));
        }
    }

    #[test]
    fn a_bad_upstream_or_http_for_another_proxy_is_refused() {
        let bad = IntegrateArgs {
            upstream: "127.0.0.1:9000/x".into(),
            ..args(Proxy::Nginx)
        };
        assert!(snippet(&bad).is_err());
        let with_path = IntegrateArgs {
            upstream: "http://127.0.0.1:9000/api".into(),
            ..args(Proxy::Caddy)
        };
        assert!(snippet(&with_path).is_err());
        let http = IntegrateArgs {
            http: true,
            ..args(Proxy::Nginx)
        };
        assert!(snippet(&http).is_err());
    }
}
