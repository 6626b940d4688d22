package sluice_test

import (
	"context"
	"errors"
	"log"
	"time"

	sluice "sluice.dev/producers/examples/go"
)

// The snippet of docs/events.md ("Producing from your service") and README.md: compiled by go vet and
// go test, not run (no // Output: it needs a broker).
func ExampleProducer_SendAll() {
	ctx := context.Background()
	p, err := sluice.NewProducer([]string{"kafka:9092"}, "schemas/json", nil) // idempotent, acks=all, murmur2
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	country := "de"
	deliveries, err := p.SendAll(ctx, []sluice.Event{sluice.ClickEvent{
		EventID: "c1f0e7a2-0001", TenantID: "acme", OccurredAt: time.Now(), ShortCode: "x7Gq", Country: &country,
	}})
	var invalid *sluice.InvalidEvent
	if errors.As(err, &invalid) {
		log.Printf("refused: field %s: %v", invalid.Field, err)
	} else if err != nil {
		log.Fatal(err)
	}
	log.Printf("partition %d, offset %d", deliveries[0].Partition, deliveries[0].Offset)
}
