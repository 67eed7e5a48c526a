//! POSIX ACL values through `uidmapping=`/`gidmapping=`.
//!
//! An ACL xattr (`system.posix_acl_access`, `system.posix_acl_default`) names users and groups
//! by id. The kernel hands the daemon ids as the mount sees them (`posix_acl_to_xattr` with the
//! connection's user namespace, fs/fuse/acl.c), and the owner of every file is stored as its
//! host id, so the ids inside an ACL are mapped the same way: to the host when it is set, back
//! when it is read. Layout (include/uapi/linux/posix_acl_xattr.h): a little-endian u32 version
//! (2), then entries of { u16 tag, u16 perm, u32 id }; only `ACL_USER` and `ACL_GROUP` entries
//! carry an id.

/// The two ACL xattr names.
pub(crate) fn is_acl_name(name: &[u8]) -> bool {
    name == b"system.posix_acl_access" || name == b"system.posix_acl_default"
}

const VERSION: u32 = 2;
const ACL_USER: u16 = 0x02;
const ACL_GROUP: u16 = 0x08;

/// `value` with the id of each user entry passed through `uid` and of each group entry through
/// `gid`. `Ok(None)` when the value is not an ACL this code knows (it is passed on as it is,
/// for the layer's filesystem to judge); `Err(id)` when an id has no mapping.
pub(crate) fn map_ids(
    value: &[u8],
    uid: impl Fn(u32) -> Option<u32>,
    gid: impl Fn(u32) -> Option<u32>,
) -> Result<Option<Vec<u8>>, u32> {
    if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) {
        return Ok(None);
    }
    if u32::from_le_bytes(value[..4].try_into().unwrap_or_default()) != VERSION {
        return Ok(None);
    }
    let mut out = value.to_vec();
    for e in out[4..].chunks_exact_mut(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let map: &dyn Fn(u32) -> Option<u32> = match tag {
            ACL_USER => &uid,
            ACL_GROUP => &gid,
            _ => continue,
        };
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let mapped = map(id).ok_or(id)?;
        e[4..8].copy_from_slice(&mapped.to_le_bytes());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = VERSION.to_le_bytes().to_vec();
        for (t, p, id) in entries {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn user_and_group_entries_are_mapped_and_the_rest_kept() {
        let u = u32::MAX; // ACL_UNDEFINED_ID
        let v = acl(&[
            (0x01, 6, u),
            (ACL_USER, 4, 1000),
            (0x04, 4, u),
            (ACL_GROUP, 5, 2000),
            (0x10, 7, u),
            (0x20, 4, u),
        ]);
        let got = map_ids(&v, |i| Some(i + 100_000), |i| Some(i + 200_000)).unwrap();
        assert_eq!(
            got.unwrap(),
            acl(&[
                (0x01, 6, u),
                (ACL_USER, 4, 101_000),
                (0x04, 4, u),
                (ACL_GROUP, 5, 202_000),
                (0x10, 7, u),
                (0x20, 4, u),
            ])
        );
        assert_eq!(map_ids(&v, |_| None, Some), Err(1000));
        assert_eq!(map_ids(b"xyz", Some, Some), Ok(None));
        assert_eq!(map_ids(&acl(&[])[..3], Some, Some), Ok(None));
        let mut v1 = v.clone();
        v1[0] = 1;
        assert_eq!(map_ids(&v1, Some, Some), Ok(None));
        assert!(is_acl_name(b"system.posix_acl_default") && !is_acl_name(b"user.x"));
    }
}
