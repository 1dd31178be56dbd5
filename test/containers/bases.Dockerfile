# The two public bases docker/Dockerfile defaults to, made from Debian's packages for a machine
# that reaches no image registry: FROM the debootstrapped bookworm minbase the tests import.
#   --target builder: node:24-bookworm's role, a Debian image with node, npm and binutils (strip)
#   --target runtime: gcr.io/distroless/base-debian12's role, glibc and no C++ runtime, no shell
ARG DEBIAN_BASE
FROM ${DEBIAN_BASE} AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm binutils ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM ${DEBIAN_BASE} AS runtime-files
# The files of the C library alone, as distroless base has it (no libstdc++ or libgcc_s: the Bun
# binary must run without them, issue 14.4).
# Bookworm is usr-merged (/lib -> usr/lib): copy each file at its real path, then add the links.
RUN mkdir /out \
 && dpkg -L libc6 | while read -r f; do \
      if [ -f "$f" ]; then echo "$(readlink -f "$(dirname "$f")")/$(basename "$f")"; fi; \
    done | sort -u | xargs -d '\n' cp -a --parents -t /out \
 && ln -s usr/lib /out/lib && ln -s usr/lib64 /out/lib64 \
 && mkdir -p /out/etc /out/tmp && chmod 1777 /out/tmp \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group

FROM scratch AS runtime
COPY --from=runtime-files /out/ /
