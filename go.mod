module github.com/gatehouse-dev/gatehouse

go 1.26.8

require (
	github.com/coder/websocket v1.8.15
	github.com/google/go-cmp v0.7.0
	github.com/klauspost/compress v1.20.3
	go.uber.org/goleak v1.3.0
)
