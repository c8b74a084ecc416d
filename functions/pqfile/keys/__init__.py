"""Pure key-pool domain: key records, statuses, selection and rotation policy."""
