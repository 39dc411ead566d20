#!/usr/bin/env bash
# Regenerates agent/push/pushpb from proto/leakhound/push/v1/push.proto (the one .proto that
# leakhound serve compiles too, in actuate/build.rs). Needed only after changing the .proto;
# the generated code is checked in so that building the agent needs neither protoc nor plugins.
#
#   apt-get install protobuf-compiler            # protoc (Debian: 3.21)
#   GOBIN=/var/tmp/leakhound-gobin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   GOBIN=/var/tmp/leakhound-gobin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
#   agent/push/generate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=${GOBIN:-/var/tmp/leakhound-gobin}:$PATH
protoc -I proto \
  --go_out=agent --go_opt=module=github.com/leakhound/leakhound/agent \
  --go-grpc_out=agent --go-grpc_opt=module=github.com/leakhound/leakhound/agent \
  leakhound/push/v1/push.proto
