package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// MaxCommandSize is the largest gateway payload Discord accepts from a
// client, in bytes.
const MaxCommandSize = 4096

// CommandError is a gateway node's refusal of a command: the node holding the
// shard answered {"ok":false,"error":Message}.
type CommandError struct {
	Shard   int
	Message string
}

func (e *CommandError) Error() string {
	return "client: gateway refused command for shard " + strconv.Itoa(e.Shard) + ": " + e.Message
}

// Send sends a gateway command about a guild to the shard that holds the
// guild: (guildID >> 22) % NumShards, with the shard count from
// Config.NumShards, else the newest count seen by Consume, else the count in
// the newest batch of the stream (ErrUnknownShardCount when there is none).
// Otherwise it is SendShard.
func (c *Client) Send(ctx context.Context, guildID uint64, payload []byte) error {
	n, err := c.shardCount(ctx)
	if err != nil {
		return err
	}
	return c.SendShard(ctx, discord.ShardForGuild(discord.Snowflake(guildID), n), payload)
}

// SendShard sends a raw gateway payload, e.g.
// {"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}},
// to the gateway node holding shard, which writes it to Discord, and waits
// for its answer. The wait ends with ctx, or after DefaultSendTimeout if ctx
// has no deadline. It returns ErrBadCommand for a payload a bot may not send
// (malformed, larger than MaxCommandSize, or an opcode other than presence,
// voice state, guild members, soundboard sounds and channel info requests),
// ErrNoGateway when no node answers in time, and a *CommandError when the
// node refuses it.
func (c *Client) SendShard(ctx context.Context, shard int, payload []byte) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if shard < 0 {
		return fmt.Errorf("%w: negative shard %d", ErrBadCommand, shard)
	}
	if err := checkCommand(payload); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultSendTimeout)
		defer cancel()
	}
	msg, err := c.nc.RequestWithContext(ctx, c.subjects.Command(shard), payload)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: shard %d", ErrNoGateway, shard)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: shard %d: %w", ErrNoGateway, shard, err)
	case errors.Is(err, nats.ErrConnectionClosed) && c.closed.Load():
		return ErrClosed
	case err != nil:
		return fmt.Errorf("client: sending command to shard %d: %w", shard, err)
	}
	var reply struct {
		OK    *bool  `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.OK == nil {
		return fmt.Errorf("%w from shard %d: %.200q", ErrBadReply, shard, msg.Data)
	}
	if !*reply.OK {
		return &CommandError{Shard: shard, Message: reply.Error}
	}
	return nil
}

// checkCommand checks that payload is a gateway command a bot may send
// through a gateway node; the node keeps heartbeats, IDENTIFY and RESUME to
// itself.
func checkCommand(payload []byte) error {
	if len(payload) > MaxCommandSize {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrBadCommand, len(payload), MaxCommandSize)
	}
	h, err := discord.ScanHeader(payload)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	switch h.Op {
	case discord.OpPresenceUpdate, discord.OpVoiceStateUpdate, discord.OpRequestGuildMembers,
		discord.OpRequestSoundboardSounds, discord.OpRequestChannelInfo:
		return nil
	}
	return fmt.Errorf("%w: op %d (%s)", ErrBadCommand, int(h.Op), h.Op)
}

// shardCount returns the bot's shard count for Send.
func (c *Client) shardCount(ctx context.Context) (int, error) {
	if c.cfg.NumShards > 0 {
		return c.cfg.NumShards, nil
	}
	c.shardsMu.Lock()
	n := c.numShards
	c.shardsMu.Unlock()
	if n > 0 {
		return n, nil
	}
	if c.closed.Load() {
		return 0, ErrClosed
	}
	stream, err := c.js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnknownShardCount, err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, c.subjects.Events())
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, fmt.Errorf("%w: the stream holds no events", ErrUnknownShardCount)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnknownShardCount, err)
	}
	_, num, _ := strings.Cut(msg.Header.Get(broker.HeaderShard), "/")
	n, ok := atoiNonNeg(num)
	if !ok || n < 1 {
		return 0, fmt.Errorf("%w: bad %s header %q", ErrUnknownShardCount, broker.HeaderShard, msg.Header.Get(broker.HeaderShard))
	}
	c.learnShards(n, msg.Sequence)
	return n, nil
}
