-- Event store (the shape sqlite-es expects) plus the transactional outbox, which is also the
-- embedded default's local event log: SQLite has one writer at a time, so outbox ids follow
-- commit order and serve as log offsets.
CREATE TABLE IF NOT EXISTS events
(
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE TABLE IF NOT EXISTS snapshots
(
  aggregate_type   text                                  NOT NULL,
  aggregate_id     text                                  NOT NULL,
  last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
  current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
  payload          text                                  NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;

CREATE TABLE IF NOT EXISTS outbox
(
  id             integer PRIMARY KEY AUTOINCREMENT,
  aggregate_type text    NOT NULL,
  aggregate_id   text    NOT NULL,
  sequence       integer NOT NULL,
  event_type     text    NOT NULL,
  event_version  text    NOT NULL,
  payload        text    NOT NULL,
  metadata       text    NOT NULL,
  recorded_at    text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  published_at   text
);

CREATE TRIGGER IF NOT EXISTS events_to_outbox AFTER INSERT ON events
BEGIN
  INSERT INTO outbox (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
  VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.event_type, NEW.event_version,
          NEW.payload, NEW.metadata);
END;
