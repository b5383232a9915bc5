package codec_test

import (
	"fmt"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// A server encodes each payload into one message; a client feeds every
// message it reads to its Decoder and handles a payload whenever ok is true.
func Example() {
	c, err := codec.ParseCompression("zlib-stream")
	if err != nil {
		panic(err)
	}
	enc, err := codec.NewEncoder(c, codec.EncoderConfig{})
	if err != nil {
		panic(err)
	}
	dec, err := codec.NewDecoder(c, codec.DecoderConfig{})
	if err != nil {
		panic(err)
	}

	hello, _ := enc.Encode(nil, []byte(`{"op":10,"d":{"heartbeat_interval":41250}}`))
	ack, _ := enc.Encode(nil, []byte(`{"op":11}`))
	fmt.Printf("first message starts % x, ends % x\n", hello[:2], hello[len(hello)-4:])

	// The server may split a payload over several messages.
	messages := [][]byte{hello[:7], hello[7:], ack}
	var buf []byte
	for _, m := range messages {
		payload, ok, err := dec.Decode(buf[:0], m)
		if err != nil {
			panic(err) // the connection must be closed and the Decoder Reset
		}
		if !ok {
			fmt.Println("incomplete, waiting for more")
			continue
		}
		fmt.Printf("%s\n", payload)
		buf = payload
	}
	// Output:
	// first message starts 78 9c, ends 00 00 ff ff
	// incomplete, waiting for more
	// {"op":10,"d":{"heartbeat_interval":41250}}
	// {"op":11}
}
