-- When a connection's login ends (LinkedIn's refresh tokens last 365 days from the first
-- authorization): shown with the connection and watched by the token refresher.
ALTER TABLE connection_views ADD COLUMN login_expires_at_ms bigint;
