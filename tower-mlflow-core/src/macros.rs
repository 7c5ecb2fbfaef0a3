//! Macros shared by the middleware of both crates.

/// Defines `get_ref`, `get_mut` and `into_inner` for a middleware that wraps its inner
/// service in a field, as tower-http's `define_inner_service_accessors!` does.
///
/// Use it inside an `impl<S> Middleware<S>` block. Without arguments the field is `inner`
/// and its type `S`; `(field: Type)` names others.
///
/// ```
/// struct Wrapper<S> {
///     inner: S,
/// }
///
/// impl<S> Wrapper<S> {
///     tower_mlflow_core::define_inner_service_accessors!();
/// }
///
/// struct Named<T> {
///     service: T,
/// }
///
/// impl<T> Named<T> {
///     tower_mlflow_core::define_inner_service_accessors!(service: T);
/// }
///
/// let mut wrapper = Wrapper { inner: 1 };
/// *wrapper.get_mut() += 1;
/// assert_eq!(*wrapper.get_ref(), 2);
/// assert_eq!(wrapper.into_inner(), 2);
/// assert_eq!(Named { service: "s" }.into_inner(), "s");
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! define_inner_service_accessors {
    () => {
        $crate::define_inner_service_accessors!(inner: S);
    };
    ($field:ident : $service:ty) => {
        /// The inner service.
        pub fn get_ref(&self) -> &$service {
            &self.$field
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut $service {
            &mut self.$field
        }

        /// Consumes the middleware, returning the inner service.
        pub fn into_inner(self) -> $service {
            self.$field
        }
    };
}

#[cfg(test)]
// The accessors are `pub`, as on real middleware; these test types are private.
#[allow(unreachable_pub)]
mod tests {
    struct Middleware<S> {
        inner: S,
        other: u8,
    }

    impl<S> Middleware<S> {
        crate::define_inner_service_accessors!();
    }

    struct Renamed<T> {
        service: T,
    }

    impl<T> Renamed<T> {
        crate::define_inner_service_accessors!(service: T);
    }

    #[test]
    fn accessors_reach_the_named_field() {
        let mut middleware = Middleware {
            inner: vec![1],
            other: 7,
        };
        middleware.get_mut().push(2);
        assert_eq!(middleware.get_ref(), &[1, 2]);
        assert_eq!(middleware.other, 7);
        assert_eq!(middleware.into_inner(), vec![1, 2]);

        let mut renamed = Renamed { service: 'a' };
        *renamed.get_mut() = 'b';
        assert_eq!(*renamed.get_ref(), 'b');
        assert_eq!(renamed.into_inner(), 'b');
    }
}
