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
        allowed_origins -> Text,
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

diesel::table! {
    api_keys (id) {
        id -> Text,
        environment_id -> Text,
        name -> Text,
        prefix -> Text,
        secret_hash -> Text,
        created_by -> Text,
        created_at -> Text,
        last_used_at -> Nullable<Text>,
        revoked_at -> Nullable<Text>,
        scope -> Text,
    }
}

diesel::table! {
    signing_keys (id) {
        id -> Text,
        environment_id -> Text,
        algorithm -> Text,
        private_key_sealed -> Text,
        public_jwk -> Text,
        created_at -> Text,
        retired_at -> Nullable<Text>,
        publish_until -> Nullable<Text>,
        usage -> Text,
        signs_from -> Nullable<Text>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        environment_id -> Text,
        user_id -> Text,
        organization_id -> Nullable<Text>,
        created_at -> Text,
        last_refreshed_at -> Text,
        expires_at -> Text,
        revoked_at -> Nullable<Text>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        created_at -> Text,
        rotated_at -> Nullable<Text>,
        successor_sealed -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Text,
        environment_id -> Text,
        url -> Text,
        description -> Text,
        events -> Text,
        secret_sealed -> Text,
        secret_prefix -> Text,
        enabled -> Bool,
        created_by -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Text,
        event -> Text,
        environment_id -> Text,
        payload -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        endpoint_id -> Text,
        event_id -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Text,
        locked_until -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Text,
        delivery_id -> Text,
        attempted_at -> Text,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
        duration_ms -> Integer,
        response_excerpt -> Nullable<Text>,
    }
}

diesel::table! {
    revisions (id) {
        id -> Integer,
        revision -> BigInt,
    }
}

diesel::table! {
    admin_sessions (token_hash) {
        token_hash -> Text,
        admin_id -> Text,
        created_at -> Text,
        last_seen_at -> Text,
        revoked_at -> Nullable<Text>,
        user_agent -> Text,
    }
}

diesel::table! {
    setup_tokens (token_hash) {
        token_hash -> Text,
        created_at -> Text,
        expires_at -> Text,
        used_at -> Nullable<Text>,
    }
}

diesel::table! {
    changes (revision) {
        revision -> BigInt,
        kind -> Text,
        flag_id -> Nullable<Text>,
        environment_id -> Nullable<Text>,
        subject_id -> Nullable<Text>,
        created_at -> Text,
    }
}

diesel::joinable!(flag_tags -> flags (flag_id));
diesel::joinable!(rules -> flags (flag_id));
diesel::joinable!(rules -> environments (environment_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(memberships -> organizations (organization_id));
diesel::joinable!(api_keys -> environments (environment_id));
diesel::joinable!(signing_keys -> environments (environment_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(admin_sessions -> admins (admin_id));
diesel::joinable!(webhook_endpoints -> environments (environment_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_deliveries -> webhook_events (event_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));

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
    api_keys,
    signing_keys,
    sessions,
    refresh_tokens,
    webhook_endpoints,
    webhook_events,
    webhook_deliveries,
    webhook_attempts,
    revisions,
    changes,
    admin_sessions,
    setup_tokens,
);
