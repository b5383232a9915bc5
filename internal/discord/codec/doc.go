// Package codec implements Discord's gateway transport compression, the
// compress= query parameter of the gateway URL, in both directions: a
// [Decoder] per connection for clients (the gateway node) and an [Encoder] per
// connection for servers (the simulator).
//
// Transport compression covers only server-to-client messages; clients always
// send plain text. It differs from payload compression (identify.compress),
// where each message is an independent zlib stream; this package does not
// handle that.
//
// # zlib-stream
//
// The connection carries one zlib stream (RFC 1950 around RFC 1951 deflate)
// that spans all server messages and is never closed:
//
//	message 1:  78 9c  <deflate blocks>  ... 00 00 ff ff
//	message 2:         <deflate blocks>  ... 00 00 ff ff
//	...
//
// Only the first message starts with the 2-byte zlib header 78 9c. After each
// payload the server does a sync flush (Z_SYNC_FLUSH): it ends the current
// block and writes an empty stored block, which pads to a byte boundary and
// ends in the bytes 00 00 ff ff. A payload is complete when the bytes received
// end with 00 00 ff ff. A payload may be split over several WebSocket messages;
// the Decoder keeps the earlier parts and returns ok == false until the last
// one arrives. Back-references reach up to 32 KiB into earlier payloads, so
// the decoder keeps a 32 KiB window per connection and must see every message
// of the connection in order. The Adler-32 trailer never comes.
//
// The zlib Decoder decodes deflate itself rather than through an io.Reader
// such as compress/flate's. A reader cannot report that its input ended
// exactly at the end of a payload, and the natural loop, "feed the message,
// Read until it is consumed", latches io.ErrUnexpectedEOF for good whenever a
// payload's output ends exactly where the reader's 32 KiB window fills (about
// once in 75,000 real events). The Decoder keeps the 32 KiB window and nothing
// else per connection; its Huffman tables are pooled.
//
// # zstd-stream
//
// The connection carries one zstd frame (RFC 8878) that is never closed. The
// first message starts with the frame header; Discord's is
//
//	28 b5 2f fd  magic
//	00           frame header descriptor: no content size, no checksum,
//	             not single-segment, no dictionary
//	40           window descriptor: 2^18 = 256 KiB window
//
// followed by blocks. After each payload the server flushes, ending the
// message with non-last blocks, so each message holds exactly one payload and
// the decoder state (window, entropy tables, repeat offsets) carries over to
// the next. The Decoder walks the block headers of each message without
// decoding them, hands the blocks to klauspost/compress's zstd decoder and
// reads until the message is consumed, never past its end. A frame whose
// window exceeds DecoderConfig.MaxWindow is refused with ErrWindowTooLarge
// before any memory is allocated for it. A zstd Decoder holds about 670 KiB
// per connection at Discord's 256 KiB window, against 32 KiB for zlib-stream;
// a gateway that cares about memory per shard should prefer zlib-stream.
//
// # Errors and limits
//
// Errors wrap the sentinels ErrUnknownCompression, ErrCorrupt,
// ErrPayloadTooLarge and ErrWindowTooLarge. Corrupt input never panics. After
// an error a Decoder keeps returning it until Reset, since the stream's shared
// context is lost.
package codec
