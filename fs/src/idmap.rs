//! uid/gid mapping between what the container sees and what is stored on disk
//! (`uidmapping=`/`gidmapping=`, fuse-overlayfs syntax `[:]C:H:N[:C:H:N…]`).

/// One range: container ids `container..container+len` are host ids `host..host+len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id as the container sees it.
    pub container: u32,
    /// First id as stored on disk.
    pub host: u32,
    /// Number of ids.
    pub len: u32,
}

/// A set of ranges. Empty means identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap(pub Vec<IdRange>);

/// The overflow id shown for host ids the map does not cover (kernel `overflowuid`).
pub const OVERFLOW_ID: u32 = 65534;

impl IdMap {
    /// Parses `[:]C:H:N[:C:H:N…]`. containers-storage sends the leading colon.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.strip_prefix(':').unwrap_or(s);
        let nums = s
            .split(':')
            .map(|n| {
                n.parse::<u32>()
                    .map_err(|_| format!("{n:?} is not a number"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if nums.is_empty() || nums.len() % 3 != 0 {
            return Err("expected container:host:count triples".into());
        }
        let ranges: Vec<IdRange> = nums
            .chunks(3)
            .map(|c| IdRange {
                container: c[0],
                host: c[1],
                len: c[2],
            })
            .collect();
        for r in &ranges {
            if r.len == 0
                || r.container.checked_add(r.len - 1).is_none()
                || r.host.checked_add(r.len - 1).is_none()
            {
                return Err(format!(
                    "range {}:{}:{} is empty or overflows",
                    r.container, r.host, r.len
                ));
            }
        }
        Ok(IdMap(ranges))
    }

    /// True when no mapping is configured.
    pub fn is_identity(&self) -> bool {
        self.0.is_empty()
    }

    /// Host id for a container id, `None` when unmapped.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        if self.0.is_empty() {
            return Some(id);
        }
        self.0
            .iter()
            .find(|r| id >= r.container && id - r.container < r.len)
            .map(|r| r.host + (id - r.container))
    }

    /// Container id for a host id, `None` when unmapped.
    pub fn to_container(&self, id: u32) -> Option<u32> {
        if self.0.is_empty() {
            return Some(id);
        }
        self.0
            .iter()
            .find(|r| id >= r.host && id - r.host < r.len)
            .map(|r| r.container + (id - r.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways_and_rejects_garbage() {
        let m = IdMap::parse(":0:1000:1:1:100000:65536").unwrap();
        assert_eq!(m.to_host(0), Some(1000));
        assert_eq!(m.to_host(1), Some(100000));
        assert_eq!(m.to_container(100001), Some(2));
        assert_eq!(m.to_container(5), None);
        assert!(IdMap::parse("0:1").is_err());
        assert!(IdMap::parse("0:1:0").is_err());
        assert!(IdMap::parse("a:b:c").is_err());
        assert!(IdMap::default().is_identity());
    }
}
