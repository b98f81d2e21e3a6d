package webhook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/corrstore/corrstore/cmd/corrstore/internal/webhook"
	"github.com/corrstore/corrstore/store"
)

func TestParseCallbacks(t *testing.T) {
	cb := callbacks(t, `# comment
shop   resume  https://orders.internal/hook   `+secretText+`,`+oldText+`   # trailing comment

*      resume  http://127.0.0.1:9/any         `+secretText+`
*      notify  http://127.0.0.1:9/notify      `+secretText+`
shop   invoice pull
`)
	e, ok := cb.Lookup("shop", "resume")
	require.True(t, ok)
	require.Equal(t, "https://orders.internal/hook", e.URL, "the namespace's own line wins over *")
	require.Equal(t, [][]byte{secretKey, oldKey}, e.Secrets, "every secret, the first first")
	e, _ = cb.Lookup("other", "resume")
	require.Equal(t, "http://127.0.0.1:9/any", e.URL)
	require.True(t, cb.Pushed("anyone", "notify"))
	require.False(t, cb.Pushed("shop", "invoice"))
	require.True(t, cb.Known("shop", "invoice"))
	require.False(t, cb.Known("other", "invoice"), "a pull line is per namespace")
	require.False(t, cb.Known("shop", "unknown"))
	require.Equal(t, []string{"invoice", "notify", "resume"}, cb.Handlers())
	var none *webhook.Callbacks
	require.False(t, none.Known("shop", "resume"), "no file: nothing known")
}

func TestParseCallbacksErrors(t *testing.T) {
	short := webhook.SecretPrefix + "c2hvcnQ="
	for _, tc := range []struct{ text, want string }{
		{"shop resume", "want NAMESPACE HANDLER URL SECRET"},
		{"Shop resume http://h/ " + secretText, `namespace "Shop"`},
		{"shop re\u0007sume http://h/ " + secretText, "control character"},
		{"shop resume ftp://h/ " + secretText, "scheme must be http or https"},
		{"shop resume http:/// " + secretText, "no host"},
		{"shop resume http://u:p@h/ " + secretText, "user or password"},
		{"shop resume http://h/", "has no secret"},
		{"shop resume http://h/ notasecret", "secret 1: must start with whsec_"},
		{"shop resume http://h/ " + secretText + "," + short, "secret 2: decodes to 5 bytes, the least is 24"},
		{"shop resume http://h/ whsec_!!!", "not standard base64"},
		{"shop resume pull extra", "a pull line has no secret"},
		{"shop resume pull\nshop resume pull", "already on line 2"},
		{"* resume http://h/ " + secretText + "\nshop resume pull", "pushed and pull-only at once (line 2)"},
	} {
		_, err := webhook.ParseCallbacks("cb.txt", []byte("# first\n"+tc.text+"\n"))
		require.Error(t, err, tc.text)
		require.Contains(t, err.Error(), tc.want, tc.text)
		line := "cb.txt:2:"
		if strings.Count(tc.text, "\n") == 1 {
			line = "cb.txt:3:"
		}
		require.True(t, strings.HasPrefix(err.Error(), line), "%q names file:line: %v", tc.text, err)
	}
	_, err := webhook.LoadCallbacks(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Contains(t, err.Error(), "--callbacks-file")
}

// The webhook-id is stable for one registration and differs for another
// tenant's correlation of the same id, or the same ref registered again.
func TestMessageID(t *testing.T) {
	c := &store.Correlation{Namespace: "a", ID: "x", Nonce: "n1"}
	id := webhook.MessageID(c)
	require.Equal(t, id, webhook.MessageID(&store.Correlation{Namespace: "a", ID: "x", Nonce: "n1", Version: 9}))
	require.NotEqual(t, id, webhook.MessageID(&store.Correlation{Namespace: "b", ID: "x", Nonce: "n1"}), "another tenant")
	require.NotEqual(t, id, webhook.MessageID(&store.Correlation{Namespace: "a", ID: "x", Nonce: "n2"}), "registered again")
	require.NotEqual(t, webhook.MessageID(&store.Correlation{Namespace: "a", ID: "bc"}), webhook.MessageID(&store.Correlation{Namespace: "ab", ID: "c"}), "parts do not run together")
	require.Regexp(t, `^msg_[0-9a-f]{32}$`, id)
}
