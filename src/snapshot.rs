//! One immutable snapshot of everything a request needs: settings, routes, policy set.
