// The one portable schema for SQLite and PostgreSQL, kept by hand in step with
// both migration folders (ids and timestamps are text, flags are booleans).

diesel::table! {
    admins (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    environments (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        position -> Integer,
        color -> Text,
        require_confirmation -> Bool,
        client_id -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    flags (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        description -> Text,
        archived -> Bool,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    flag_tags (flag_id, tag) {
        flag_id -> Text,
        tag -> Text,
    }
}

diesel::table! {
    rules (flag_id, environment_id) {
        flag_id -> Text,
        environment_id -> Text,
        mode -> Text,
        enabled -> Bool,
        version -> Integer,
        updated_by -> Nullable<Text>,
        updated_at -> Text,
    }
}

diesel::table! {
    organizations (id) {
        id -> Text,
        name -> Text,
        external_id -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        first_name -> Text,
        last_name -> Text,
        external_id -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    memberships (user_id, organization_id) {
        user_id -> Text,
        organization_id -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    targets (flag_id, environment_id, target_id) {
        flag_id -> Text,
        environment_id -> Text,
        target_type -> Text,
        target_id -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        actor -> Text,
        action -> Text,
        object_type -> Text,
        object_id -> Text,
        object_label -> Text,
        flag_id -> Nullable<Text>,
        environment_id -> Nullable<Text>,
        before_state -> Nullable<Text>,
        after_state -> Nullable<Text>,
        created_at -> Text,
    }
}

diesel::joinable!(flag_tags -> flags (flag_id));
diesel::joinable!(rules -> flags (flag_id));
diesel::joinable!(rules -> environments (environment_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(memberships -> organizations (organization_id));

diesel::allow_tables_to_appear_in_same_query!(
    admins,
    environments,
    flags,
    flag_tags,
    rules,
    organizations,
    users,
    memberships,
    targets,
    audit_events,
);
