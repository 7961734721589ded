package eventid

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		id, want string
	}{
		{"a", ""},
		{"inv_2024-05-06.1:x~y", ""},
		{"evt_01890a5d-ac96-774b-bcce-b302099a8057", ""},
		{strings.Repeat("x", MaxLength), ""},
		{"", "must not be empty"},
		{strings.Repeat("x", MaxLength+1), "is 129 characters long, maximum is 128"},
		{"a b", `invalid character ' ' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`},
		{"a/b", `invalid character '/' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`},
		{"a\r\nb", `invalid character '\r' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`},
		{"é", `invalid character 'é' at position 1, allowed are A-Z a-z 0-9 and . _ ~ : -`},
		{"a\xff", `invalid character '�' at position 2, allowed are A-Z a-z 0-9 and . _ ~ : -`},
	} {
		got := ""
		if err := Validate(tt.id); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Validate(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}
