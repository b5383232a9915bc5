package discord

import (
	"strings"
)

// Intents is the bit set sent in IDENTIFY to choose which events a session
// receives.
type Intents uint64

// Gateway intents. GUILD_MEMBERS, GUILD_PRESENCES and MESSAGE_CONTENT are
// privileged: the application must have them enabled, or IDENTIFY is closed
// with 4014.
const (
	IntentGuilds                      Intents = 1 << 0
	IntentGuildMembers                Intents = 1 << 1 // privileged
	IntentGuildModeration             Intents = 1 << 2
	IntentGuildExpressions            Intents = 1 << 3
	IntentGuildIntegrations           Intents = 1 << 4
	IntentGuildWebhooks               Intents = 1 << 5
	IntentGuildInvites                Intents = 1 << 6
	IntentGuildVoiceStates            Intents = 1 << 7
	IntentGuildPresences              Intents = 1 << 8 // privileged
	IntentGuildMessages               Intents = 1 << 9
	IntentGuildMessageReactions       Intents = 1 << 10
	IntentGuildMessageTyping          Intents = 1 << 11
	IntentDirectMessages              Intents = 1 << 12
	IntentDirectMessageReactions      Intents = 1 << 13
	IntentDirectMessageTyping         Intents = 1 << 14
	IntentMessageContent              Intents = 1 << 15 // privileged
	IntentGuildScheduledEvents        Intents = 1 << 16
	IntentAutoModerationConfiguration Intents = 1 << 20
	IntentAutoModerationExecution     Intents = 1 << 21
	IntentGuildMessagePolls           Intents = 1 << 24
	IntentDirectMessagePolls          Intents = 1 << 25

	// IntentsPrivileged is the set of privileged intents (0x8102).
	IntentsPrivileged = IntentGuildMembers | IntentGuildPresences | IntentMessageContent
	// IntentsAll is every defined intent (53608447, 0x331FFFF).
	IntentsAll Intents = 0x331FFFF
	// IntentsNonPrivileged is every defined intent that is not privileged.
	IntentsNonPrivileged = IntentsAll &^ IntentsPrivileged
)

var intentNames = []struct {
	bit  Intents
	name string
}{
	{IntentGuilds, "GUILDS"}, {IntentGuildMembers, "GUILD_MEMBERS"},
	{IntentGuildModeration, "GUILD_MODERATION"}, {IntentGuildExpressions, "GUILD_EXPRESSIONS"},
	{IntentGuildIntegrations, "GUILD_INTEGRATIONS"}, {IntentGuildWebhooks, "GUILD_WEBHOOKS"},
	{IntentGuildInvites, "GUILD_INVITES"}, {IntentGuildVoiceStates, "GUILD_VOICE_STATES"},
	{IntentGuildPresences, "GUILD_PRESENCES"}, {IntentGuildMessages, "GUILD_MESSAGES"},
	{IntentGuildMessageReactions, "GUILD_MESSAGE_REACTIONS"}, {IntentGuildMessageTyping, "GUILD_MESSAGE_TYPING"},
	{IntentDirectMessages, "DIRECT_MESSAGES"}, {IntentDirectMessageReactions, "DIRECT_MESSAGE_REACTIONS"},
	{IntentDirectMessageTyping, "DIRECT_MESSAGE_TYPING"}, {IntentMessageContent, "MESSAGE_CONTENT"},
	{IntentGuildScheduledEvents, "GUILD_SCHEDULED_EVENTS"},
	{IntentAutoModerationConfiguration, "AUTO_MODERATION_CONFIGURATION"},
	{IntentAutoModerationExecution, "AUTO_MODERATION_EXECUTION"},
	{IntentGuildMessagePolls, "GUILD_MESSAGE_POLLS"}, {IntentDirectMessagePolls, "DIRECT_MESSAGE_POLLS"},
}

// Valid reports whether every bit of i is a defined intent (undefined bits
// close IDENTIFY with 4013).
func (i Intents) Valid() bool { return i&^IntentsAll == 0 }

// Has reports whether all bits of want are set in i.
func (i Intents) Has(want Intents) bool { return i&want == want }

// String lists the intent names joined by "|", with undefined bits as hex.
func (i Intents) String() string {
	if i == 0 {
		return "0"
	}
	var parts []string
	for _, n := range intentNames {
		if i&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	if rest := i &^ IntentsAll; rest != 0 {
		parts = append(parts, "0x"+strings.ToUpper(uint64Hex(uint64(rest))))
	}
	return strings.Join(parts, "|")
}

func uint64Hex(v uint64) string {
	const digits = "0123456789abcdef"
	if v == 0 {
		return "0"
	}
	var b [16]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[i:])
}

// IntentForEvent returns the intents that gate a guild dispatch named t
// (e.g. MESSAGE_CREATE → GUILD_MESSAGES), and false for events sent whatever
// the intents (READY, RESUMED, INTERACTION_CREATE, GUILD_MEMBERS_CHUNK, …).
// Direct-message variants are not distinguished: t names a guild event.
func IntentForEvent(t string) (Intents, bool) {
	switch {
	case t == "GUILD_CREATE", t == "GUILD_UPDATE", t == "GUILD_DELETE",
		strings.HasPrefix(t, "GUILD_ROLE_"), strings.HasPrefix(t, "CHANNEL_"),
		strings.HasPrefix(t, "THREAD_") && t != "THREAD_MEMBERS_UPDATE",
		strings.HasPrefix(t, "STAGE_INSTANCE_"),
		strings.HasPrefix(t, "VOICE_CHANNEL_") && t != "VOICE_CHANNEL_EFFECT_SEND":
		return IntentGuilds, true
	case strings.HasPrefix(t, "GUILD_MEMBER_") && t != "GUILD_MEMBERS_CHUNK", t == "THREAD_MEMBERS_UPDATE":
		return IntentGuildMembers, true
	case t == "GUILD_AUDIT_LOG_ENTRY_CREATE", strings.HasPrefix(t, "GUILD_BAN_"):
		return IntentGuildModeration, true
	case t == "GUILD_EMOJIS_UPDATE", t == "GUILD_STICKERS_UPDATE", strings.HasPrefix(t, "GUILD_SOUNDBOARD_SOUND"):
		return IntentGuildExpressions, true
	case t == "GUILD_INTEGRATIONS_UPDATE", strings.HasPrefix(t, "INTEGRATION_"):
		return IntentGuildIntegrations, true
	case t == "WEBHOOKS_UPDATE":
		return IntentGuildWebhooks, true
	case strings.HasPrefix(t, "INVITE_"):
		return IntentGuildInvites, true
	case t == "VOICE_STATE_UPDATE", t == "VOICE_CHANNEL_EFFECT_SEND":
		return IntentGuildVoiceStates, true
	case t == "PRESENCE_UPDATE":
		return IntentGuildPresences, true
	case strings.HasPrefix(t, "MESSAGE_POLL_VOTE_"):
		return IntentGuildMessagePolls, true
	case strings.HasPrefix(t, "MESSAGE_REACTION_"):
		return IntentGuildMessageReactions, true
	case strings.HasPrefix(t, "MESSAGE_"):
		return IntentGuildMessages, true
	case t == "TYPING_START":
		return IntentGuildMessageTyping, true
	case strings.HasPrefix(t, "GUILD_SCHEDULED_EVENT_"):
		return IntentGuildScheduledEvents, true
	case strings.HasPrefix(t, "AUTO_MODERATION_RULE_"):
		return IntentAutoModerationConfiguration, true
	case t == "AUTO_MODERATION_ACTION_EXECUTION":
		return IntentAutoModerationExecution, true
	}
	return 0, false
}

// IntentByName returns the intent named like Discord's docs
// ("GUILD_MESSAGES").
func IntentByName(name string) (Intents, bool) {
	for _, n := range intentNames {
		if n.name == name {
			return n.bit, true
		}
	}
	return 0, false
}
