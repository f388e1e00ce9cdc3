package api

import (
	"errors"
	"testing"
)

// TestMayRepeatKeys: the fast look never misses a repeated key, and says
// "no" for ordinary policies so the slow scan is skipped.
func TestMayRepeatKeys(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{`{"a":1,"b":{"a":2},"c":["a","a"]}`, false},
		{`{"a":"x,\"y\"","b":"}"}`, false},
		{`[{"a":1},{"a":2}]`, false},
		{`{"a":1,"a":2}`, true},
		{`{"x":{"a":{},"a":[]}}`, true},
		{`{"a":1,"\u0061":2}`, true}, // escaped: left to scanJSON
		{`{"a":1`, false},
		{`{"a":1}}`, true}, // unbalanced: left to scanJSON
	} {
		if got := mayRepeatKeys([]byte(c.in)); got != c.want {
			t.Errorf("mayRepeatKeys(%s) = %v, want %v", c.in, got, c.want)
		}
	}
}

// FuzzMayRepeatKeys: whatever the input, a repeat scanJSON finds is one
// mayRepeatKeys flags.
func FuzzMayRepeatKeys(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `[{"k":1},{"k":"v","k":3}]`, `{"a":1,"\u0061":2}`, `{"s":"\"}{\"","s":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var dup *DuplicateKeyError
		if err := scanJSON(b, 0, nil); errors.As(err, &dup) && !mayRepeatKeys(b) {
			t.Fatalf("scanJSON found %v in %q, mayRepeatKeys did not", err, b)
		}
	})
}
