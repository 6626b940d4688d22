package sluice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// EncodingHeader names the record value's encoding (docs/events.md, "Record value").
const EncodingHeader = "sluice-encoding"

// Partitioner is the contract's partitioner: (murmur2(key) & 0x7fffffff) % partitions, as Kafka's Java
// client. franz-go's key partitioner with a nil hasher is exactly that (kgo.KafkaHasher(murmur2)).
func Partitioner() kgo.Partitioner { return kgo.StickyKeyPartitioner(nil) }

// Topics maps a kind ("rank", "crawl", "click") to its topic.
type Topics map[string]string

// DefaultTopics are the contract's default topic names.
var DefaultTopics = Topics{"rank": "rank-events", "crawl": "crawl-events", "click": "click-events"}

// Delivery is where the broker stored one event.
type Delivery struct {
	Event     Event
	Topic     string
	Partition int32
	Offset    int64
}

// Producer publishes Sluice events. Idempotent writes and acks=all are franz-go's defaults (asked for
// explicitly here); a record that still fails after the client's own retries is sent again by SendAll
// with the same bytes, so the same event_id.
type Producer struct {
	client    *kgo.Client
	validator *Validator
	topics    Topics
	attempts  int
}

// NewProducer connects lazily to brokers; schemasDir is the repository's schemas/json.
func NewProducer(brokers []string, schemasDir string, topics Topics, opts ...kgo.Opt) (*Producer, error) {
	validator, err := NewValidator(schemasDir)
	if err != nil {
		return nil, err
	}
	all := Topics{}
	for k, t := range DefaultTopics {
		all[k] = t
	}
	for k, t := range topics {
		all[k] = t
	}
	client, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // with idempotence (on unless disabled)
		kgo.RecordPartitioner(Partitioner()),
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka client: %w", err)
	}
	return &Producer{client: client, validator: validator, topics: all, attempts: 3}, nil
}

// Close flushes nothing (SendAll waits for its records) and disconnects.
func (p *Producer) Close() { p.client.Close() }

// SendAll validates and encodes every event first, then publishes them and waits for every
// acknowledgement; failed records are re-sent (same key, same value) up to 3 attempts in all.
// Deliveries come back in input order.
func (p *Producer) SendAll(ctx context.Context, events []Event) ([]Delivery, error) {
	records := make([]*kgo.Record, len(events))
	for i, e := range events {
		value, err := p.validator.Encode(e)
		if err != nil {
			return nil, err
		}
		records[i] = &kgo.Record{
			Topic:   p.topics[e.Kind()],
			Key:     []byte(e.Key()),
			Value:   value,
			Headers: []kgo.RecordHeader{{Key: EncodingHeader, Value: []byte("json")}},
		}
	}
	deliveries := make([]Delivery, len(events))
	pending := make([]int, len(events))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 1; ; attempt++ {
		batch := make([]*kgo.Record, len(pending))
		index := make(map[*kgo.Record]int, len(pending))
		for j, i := range pending {
			r := records[i]
			// A fresh record each attempt: same topic, key, value and headers.
			batch[j] = &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
			index[batch[j]] = i
		}
		// Results come in completion order, not in the order given.
		results := p.client.ProduceSync(ctx, batch...)
		var failed []int
		var firstErr error
		for _, res := range results {
			i := index[res.Record]
			if res.Err != nil {
				failed = append(failed, i)
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", events[i].ID(), res.Err)
				}
				continue
			}
			deliveries[i] = Delivery{events[i], res.Record.Topic, res.Record.Partition, res.Record.Offset}
		}
		if len(failed) == 0 {
			return deliveries, nil
		}
		if attempt == p.attempts || ctx.Err() != nil || errors.Is(firstErr, kgo.ErrClientClosed) {
			return nil, fmt.Errorf("%d records not delivered after %d attempts; first: %w", len(failed), attempt, firstErr)
		}
		pending = failed
	}
}
