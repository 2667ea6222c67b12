-- IPv6 on bridge networks (`EnableIPv6`): the network's IPv6 subnet and
-- gateway (empty: no IPv6), and each endpoint's IPv6 address.
ALTER TABLE networks ADD COLUMN subnet6 TEXT NOT NULL DEFAULT '';
ALTER TABLE networks ADD COLUMN gateway6 TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN ip6 TEXT NOT NULL DEFAULT '';
