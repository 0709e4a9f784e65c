//! The object table: resources shared by several fds or mappings (open file
//! descriptions, pipes, shared-memory objects, mapped files) are written once and
//! referenced by id.

use std::collections::{BTreeSet, HashMap};

use stasis_image::model::*;

#[derive(Default)]
pub struct ObjectTable {
    pub objects: Vec<Object>,
    by_key: HashMap<String, u32>,
    /// Resources the user marked external (`dump --external`), canonical names
    /// (`pipe:[INO]`, `shm:[INO]`): recorded as external instead of refused.
    pub external: BTreeSet<String>,
    /// Nameless regular files (deleted files, memfds) whose content goes to the pages
    /// files: (GhostObj id, our open description, size at dump).
    pub ghost_files: Vec<(u32, std::fs::File, u64)>,
}

impl ObjectTable {
    /// Returns the id stored under `key`, or inserts the object made by `make`.
    pub fn intern(&mut self, key: String, make: impl FnOnce(u32) -> Object) -> u32 {
        if let Some(id) = self.by_key.get(&key) {
            return *id;
        }
        let id = self.objects.len() as u32 + 1;
        let mut o = make(id);
        o.id = id;
        self.objects.push(o);
        self.by_key.insert(key, id);
        id
    }

    /// The id stored under `key`, if any.
    pub fn find(&self, key: &str) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    /// The object of id `id` (ids count from 1; 0 names none).
    pub fn get(&self, id: u32) -> Option<&Object> {
        self.objects.get((id as usize).checked_sub(1)?)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Object> {
        self.objects.get_mut((id as usize).checked_sub(1)?)
    }
}
