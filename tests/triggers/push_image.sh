#!/bin/sh
# A task build for the chain test: "builds" the base project by pushing a new
# single-layer image to a real registry over the distribution API (what
# `buildah push` would do), and records what basewatch handed it.
#   push_image.sh REGISTRY REPO TAG OUTDIR
# Writes OUTDIR/env (the BASEWATCH_* variables), OUTDIR/stdin, OUTDIR/payload
# (the file named by $BASEWATCH_PAYLOAD_FILE), OUTDIR/pwd and OUTDIR/digest.
set -eu
reg=$1 repo=$2 tag=$3 out=$4
env | grep '^BASEWATCH_' | sort > "$out/env"
cat > "$out/stdin"
cat "$BASEWATCH_PAYLOAD_FILE" > "$out/payload"
pwd > "$out/pwd"
work=$(mktemp -d "$out/push.XXXXXX")
mkdir -p "$work/root/etc"
printf 'rebuilt for %s\n' "$BASEWATCH_DELIVERY_ID" > "$work/root/etc/release"
tar -C "$work/root" -cf "$work/layer.tar" etc
layer_digest="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
layer_size=$(stat -c %s "$work/layer.tar")
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' "$layer_digest" > "$work/config.json"
config_digest="sha256:$(sha256sum "$work/config.json" | cut -d' ' -f1)"
config_size=$(stat -c %s "$work/config.json")
for blob in "layer.tar:$layer_digest" "config.json:$config_digest"; do
  file=${blob%%:*} digest=${blob#*:}
  location=$(curl -fsS -X POST -D - -o /dev/null "http://$reg/v2/$repo/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case "$location" in http*) ;; *) location="http://$reg$location" ;; esac
  case "$location" in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$work/$file" "$location${sep}digest=$digest" >/dev/null
done
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":%s,"digest":"%s"},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","size":%s,"digest":"%s"}]}' \
  "$config_size" "$config_digest" "$layer_size" "$layer_digest" > "$work/manifest.json"
curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$work/manifest.json" "http://$reg/v2/$repo/manifests/$tag" >/dev/null
echo "sha256:$(sha256sum "$work/manifest.json" | cut -d' ' -f1)" > "$out/digest"
rm -rf "$work"
echo "pushed $repo:$tag $(cat "$out/digest")"
