package coordapi

// ErrorBody is the JSON body of every error of the coordinator's own API.
type ErrorBody struct {
	Error string `json:"error"`
	// Code names the error for programs: one of the Code constants.
	Code string `json:"code"`
	// RetryAfterMS is set when the request may be retried later.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// Error codes.
const (
	CodeUnauthorized    = "unauthorized"
	CodeForbidden       = "forbidden"
	CodeNotFound        = "not_found"
	CodeBadRequest      = "bad_request"
	CodeTooManyRequests = "too_many_requests"
	CodeBudgetExhausted = "budget_exhausted"
	CodeNoShardFree     = "no_shard_free"
	CodeConflict        = "conflict"
	CodeShuttingDown    = "shutting_down"
	CodeUnavailable     = "unavailable"
	CodeTooLarge        = "too_large"
	CodeNotImplemented  = "not_implemented"
	CodeInternal        = "internal"
)

// Codes lists every error code, for documentation checks.
var Codes = []string{
	CodeUnauthorized, CodeForbidden, CodeNotFound, CodeBadRequest, CodeTooManyRequests, CodeBudgetExhausted,
	CodeNoShardFree, CodeConflict, CodeShuttingDown, CodeUnavailable, CodeTooLarge, CodeNotImplemented, CodeInternal,
}
