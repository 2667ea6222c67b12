#!/bin/sh
# Assembles the root filesystem of Berth's container image (deploy/Containerfile
# is built with it as the context): the binaries of BIN_DIR, the host tools
# Berth runs (nft for the network service's rules, ps for `docker top`,
# tini-static as docker-init for `--init` when installed), every shared library
# they load (found with ldd, so the image matches the host that built the
# binaries), the CA bundle for registries, and a root-only /etc/passwd.
#
#   deploy/image-rootfs.sh BIN_DIR OUT_DIR
set -eu
bin_dir=$1
out=$2
rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/usr/sbin" "$out/usr/bin" "$out/etc/ssl/certs" "$out/etc/berth" \
    "$out/var/lib/berth" "$out/run/berth" "$out/tmp"
chmod 1777 "$out/tmp"
for b in berthd berth-gateway berth-image berth-runtime berth-network berth-volume berth-shim; do
    # Stripped: the image carries no debug information.
    install -s -m 0755 "$bin_dir/$b" "$out/usr/local/bin/$b"
done
install -m 0755 "$(command -v nft)" "$out/usr/sbin/nft"
if command -v ps >/dev/null; then
    install -m 0755 "$(command -v ps)" "$out/usr/bin/ps"
fi
if [ -x /usr/bin/tini-static ]; then
    install -m 0755 /usr/bin/tini-static "$out/usr/local/bin/docker-init"
fi
# The libraries and the loader each program names (`=> /path`, or the loader's own line).
for f in "$out"/usr/local/bin/* "$out"/usr/sbin/* "$out"/usr/bin/*; do
    ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' || true
done | sort -u | while read -r lib; do
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n' > "$out/etc/passwd"
printf 'root:x:0:\n' > "$out/etc/group"
cp deploy/berth.toml.example "$out/etc/berth/berth.toml.example"
