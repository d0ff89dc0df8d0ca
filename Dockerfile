# mediasoup-signal: one image for every role (nuve, gateway, agent); the role is the command.
#   docker build -t mediasoup-signal .
#   docker run mediasoup-signal nuve|gateway|agent|all
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
# npm ci + the mediasoup worker: prebuilt when downloadable, else built offline against Debian's libraries.
RUN bash scripts/install.sh && npm prune --omit=dev
COPY src ./src
COPY bin ./bin
COPY client ./client
COPY examples ./examples
COPY tsconfig.json ./

FROM node:20-bookworm-slim
# Shared libraries an offline-built worker links against (a prebuilt worker needs none of them).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libssl3 libuv1 libsrtp2-1 libusrsctp2 libabsl20220623 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build --chown=node:node /app /app
USER node
ENV NODE_ENV=production
EXPOSE 3000 8080
ENTRYPOINT ["node", "--import", "tsx", "src/cli.ts"]
CMD ["all"]
