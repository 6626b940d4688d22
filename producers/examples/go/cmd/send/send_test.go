package main

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	sluice "sluice.dev/producers/examples/go"
)

// repo is the repository root, found from this file's location.
func repo(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "../../../../..")
}

func setup(t *testing.T) (*Vectors, *sluice.Validator) {
	t.Helper()
	v, err := ReadVectors(filepath.Join(repo(t), "schemas/vectors/events.json"))
	if err != nil {
		t.Fatal(err)
	}
	validator, err := sluice.NewValidator(filepath.Join(repo(t), "schemas/json"))
	if err != nil {
		t.Fatal(err)
	}
	return v, validator
}

func TestValidVectorsEncodeKeyAndPartitionAsTheVectorsSay(t *testing.T) {
	v, validator := setup(t)
	partitioner := sluice.Partitioner().ForTopic("vectors")
	for _, vec := range v.Valid {
		event, err := Typed(vec.Kind, vec.Event)
		if err != nil {
			t.Fatalf("%s: %v", vec.Name, err)
		}
		value, err := validator.Encode(event)
		if err != nil {
			t.Fatalf("%s: refused: %v", vec.Name, err)
		}
		var got, want any
		if err := json.Unmarshal(value, &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(vec.Event, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: wrote %s, the vector is %s", vec.Name, value, vec.Event)
		}
		if event.Key() != vec.Key {
			t.Errorf("%s: key %q, want %q", vec.Name, event.Key(), vec.Key)
		}
		if p := partitioner.Partition(&kgo.Record{Key: []byte(event.Key())}, v.Partitions); p != vec.Partition {
			t.Errorf("%s: partition of %q is %d, want %d", vec.Name, event.Key(), p, vec.Partition)
		}
	}
}

func TestInvalidVectorsAreRefusedNamingTheField(t *testing.T) {
	v, validator := setup(t)
	if len(v.Invalid) < 8 {
		t.Fatalf("only %d invalid vectors", len(v.Invalid))
	}
	for _, vec := range v.Invalid {
		err := validator.Validate(vec.Kind, vec.Event)
		var invalid *sluice.InvalidEvent
		if !errors.As(err, &invalid) {
			t.Errorf("%s: want an InvalidEvent, got %v", vec.Name, err)
			continue
		}
		if invalid.Field != vec.Field {
			t.Errorf("%s: error names %q, want %q: %v", vec.Name, invalid.Field, vec.Field, err)
		}
	}
}

func TestTypedValuesAreWrittenInUTCWithSixDigitsAndCheckedBeforeSending(t *testing.T) {
	_, validator := setup(t)
	at := time.Date(2026, 6, 15, 13, 30, 0, 120000000, time.FixedZone("+02", 2*3600))
	value, err := validator.Encode(sluice.ClickEvent{EventID: "e", TenantID: "t", OccurredAt: at, ShortCode: "s"})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.Unmarshal(value, &doc)
	if doc["occurred_at"] != "2026-06-15T11:30:00.120000Z" {
		t.Errorf("occurred_at written as %v", doc["occurred_at"])
	}
	zero := 0
	_, err = validator.Encode(sluice.RankEvent{EventID: "e", TenantID: "t", OccurredAt: at, CampaignID: "c",
		Keyword: "k", Geo: "us", Engine: "google", Device: "mobile", Position: &zero})
	var invalid *sluice.InvalidEvent
	if !errors.As(err, &invalid) || invalid.Field != "position" {
		t.Errorf("position 0: got %v", err)
	}
}
