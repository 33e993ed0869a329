#!/usr/bin/env bash
# Builds permgate's container image without a Docker daemon: an OCI image layout made by umoci (Debian's
# `umoci` package) from a root file system holding only the permgate binary, the shared libraries it links
# (found by ldd), the CA bundle (for an https upstream), and /etc/passwd + /etc/group naming the non-root user
# `permgate` (65532:65532) the image runs as.
#
#   deploy/image/build.sh BINARY OUT [TAG]
#
#   BINARY  the permgate binary to put in the image: target/release/permgate for an image you ship
#           (cargo build --release --locked); tests/deploy_image.rs builds one from its own debug binary
#   OUT     the OCI image layout folder to create or add the tag to
#   TAG     the image's tag (default: the binary's `permgate --version`, e.g. 0.1.0)
#
# The result is a plain OCI layout; push it to a registry or load it with skopeo (Debian's `skopeo`), e.g.
#   skopeo copy oci:OUT:TAG docker://registry.example.com/permgate:TAG
#   skopeo copy oci:OUT:TAG docker-archive:permgate.tar:permgate:TAG     # then `docker load < permgate.tar`
# The image's command is `permgate serve --config /etc/permgate/gateway.yaml`: mount the config there
# (deploy/deployment.yaml does, from the ConfigMap and the Secret).
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 BINARY OUT [TAG]" >&2
  exit 2
fi
BINARY="$(realpath "$1")"
OUT="$2"
for tool in umoci ldd; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (apt-get install -y umoci)" >&2; exit 1; }
done
[ -x "$BINARY" ] || { echo "$0: $BINARY is not an executable" >&2; exit 1; }
TAG="${3:-$("$BINARY" --version | awk '{print $2}')}"
USER_ID=65532

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/permgate-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT

# The binary, and every library it links (the dynamic loader included), at the paths ldd names; symlinks are
# resolved (the file is copied under the name the binary asks for).
install -D -m 0755 "$BINARY" "$ROOTFS/usr/local/bin/permgate"
ldd "$BINARY" | awk '/=> \//{print $3} /^[[:space:]]*\//{print $1}' | sort -u | while read -r lib; do
  install -D -m 0755 "$(realpath "$lib")" "$ROOTFS$lib"
done

# The user and group the image runs as (no shell, no home), and root's (so that ids print as names).
mkdir -p "$ROOTFS/etc" "$ROOTFS/etc/permgate" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\npermgate:x:%d:%d:permgate:/nonexistent:/sbin/nologin\n' \
  "$USER_ID" "$USER_ID" >"$ROOTFS/etc/passwd"
printf 'root:x:0:\npermgate:x:%d:\n' "$USER_ID" >"$ROOTFS/etc/group"
printf 'hosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
# The system roots for an https upstream (rustls-native-certs reads this file); without it, set
# upstream.ca_file.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
else
  echo "$0: no /etc/ssl/certs/ca-certificates.crt here (apt-get install -y ca-certificates): the image has no CA roots" >&2
fi
chown -R 0:0 "$ROOTFS"
chmod 0755 "$ROOTFS"

# The image: a new tag in the layout, one layer with the whole root file system, and the config.
[ -f "$OUT/index.json" ] || umoci init --layout "$OUT"
umoci new --image "$OUT:$TAG"
umoci insert --image "$OUT:$TAG" --history.created_by "deploy/image/build.sh" "$ROOTFS" /
umoci config --image "$OUT:$TAG" \
  --os linux --architecture "$(uname -m | sed -e 's/x86_64/amd64/' -e 's/aarch64/arm64/')" \
  --config.user "$USER_ID:$USER_ID" \
  --config.workingdir / \
  --config.entrypoint /usr/local/bin/permgate \
  --config.cmd serve --config.cmd --config --config.cmd /etc/permgate/gateway.yaml \
  --config.exposedports 8080/tcp --config.exposedports 9090/tcp \
  --config.stopsignal SIGTERM \
  --config.label "org.opencontainers.image.title=permgate" \
  --config.label "org.opencontainers.image.version=$TAG" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  --history.created_by "deploy/image/build.sh: config"
umoci gc --layout "$OUT"
echo "built $OUT:$TAG"
