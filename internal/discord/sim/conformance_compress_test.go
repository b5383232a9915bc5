package sim_test

import (
	"bytes"
	"testing"

	"github.com/coder/websocket"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// zstdMagic starts a zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// framesOf starts a session on c (HELLO unread) and returns HELLO, an ACK,
// READY, the GUILD_CREATEs and some events, in order.
func framesOf(t *testing.T, s *simServer, c *conn) []*frame {
	t.Helper()
	hello := c.next()
	if hello.Op != discord.OpHello {
		t.Fatalf("first frame %v, want HELLO", hello)
	}
	c.heartbeat()
	ack, _ := c.waitOp(discord.OpHeartbeatACK)
	ss := s.identifyOn(t, c, startOpts{})
	events, others := ss.collectEvents(10)
	all := append([]*frame{hello, ack, ss.readyF}, ss.creates...)
	all = append(all, others...)
	for _, ev := range events {
		all = append(all, ev.f)
	}
	return all
}

// TestTransportUncompressed: without compress every frame is one text
// message.
func TestTransportUncompressed(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds, cfg.EventRate = 5, 100
	s := startSim(t, cfg)
	for _, f := range framesOf(t, s, s.dial(t, dialOpts{})) {
		if f.Type != websocket.MessageText || len(f.Wire) != 1 {
			t.Fatalf("frame %v arrived as %d message(s) of type %v, want one text message", f, len(f.Wire), f.Type)
		}
	}
}

// TestZlibStream: with compress=zlib-stream every payload is one binary
// message ending in 00 00 ff ff, only the first starts with the zlib header
// 78 9c, and one inflate context decodes them all.
func TestZlibStream(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds, cfg.EventRate = 5, 100
	s := startSim(t, cfg)
	all := framesOf(t, s, s.dial(t, dialOpts{comp: codec.ZlibStream}))
	checkZlibFrames(t, all)
}

func checkZlibFrames(t *testing.T, all []*frame) {
	t.Helper()
	for i, f := range all {
		if f.Type != websocket.MessageBinary || len(f.Wire) != 1 {
			t.Fatalf("frame %v arrived as %d message(s) of type %v, want one binary message", f, len(f.Wire), f.Type)
		}
		w := f.Wire[0]
		if !bytes.HasSuffix(w, zlibSuffix) {
			t.Errorf("message %d (%s) ends % x, want 00 00 ff ff", i, f.T, w[max(0, len(w)-4):])
		}
		if i == 0 && !bytes.HasPrefix(w, []byte{0x78, 0x9c}) {
			t.Errorf("first message starts % x, want 78 9c", w[:min(2, len(w))])
		}
	}
}

// TestZstdStream: with compress=zstd-stream every payload is one binary
// message of one never-closed zstd frame.
func TestZstdStream(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds, cfg.EventRate = 5, 100
	s := startSim(t, cfg)
	all := framesOf(t, s, s.dial(t, dialOpts{comp: codec.ZstdStream}))
	for i, f := range all {
		if f.Type != websocket.MessageBinary || len(f.Wire) != 1 {
			t.Fatalf("frame %v arrived as %d message(s) of type %v, want one binary message", f, len(f.Wire), f.Type)
		}
		// Discord's header: magic, no content size or checksum, window 256 KiB.
		if i == 0 && !bytes.HasPrefix(f.Wire[0], []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x40}) {
			t.Errorf("first message starts % x, want Discord's 28 b5 2f fd 00 40", f.Wire[0][:min(6, len(f.Wire[0]))])
		}
		if i > 0 && bytes.HasPrefix(f.Wire[0], zstdMagic) {
			t.Errorf("message %d starts a new zstd frame, want one frame per connection", i)
		}
	}
}

// TestCompressDefault: CompressDefault applies when the URL has no
// compress=, and an explicit compress= wins.
func TestCompressDefault(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Guilds, cfg.EventRate = 5, 100
	cfg.CompressDefault = codec.ZlibStream
	s := startSim(t, cfg)
	checkZlibFrames(t, framesOf(t, s, s.dial(t, dialOpts{comp: codec.ZlibStream, noCompressParam: true})))
	zs := framesOf(t, s, s.dial(t, dialOpts{comp: codec.ZstdStream}))
	if !bytes.HasPrefix(zs[0].Wire[0], zstdMagic) {
		t.Errorf("compress=zstd-stream on a zlib-default server: first message % x, want zstd", zs[0].Wire[0][:4])
	}
}

// TestCompressedResume: a resumed connection starts a fresh compression
// context.
func TestCompressedResume(t *testing.T) {
	t.Parallel()
	for _, comp := range []codec.Compression{codec.ZlibStream, codec.ZstdStream} {
		t.Run(string(comp), func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			cfg.Guilds, cfg.EventRate = 5, 100
			s := startSim(t, cfg)
			ss := s.start(t, startOpts{dial: dialOpts{comp: comp}})
			ss.collectEvents(5)
			last := ss.lastSeq.Load()
			ss.disconnect()
			rc := ss.resume(t, ss.resumeURL(), last)
			rc.waitDispatch("RESUMED")
			rc.collectEvents(5)
		})
	}
}
