<?php
/**
 * My Account: the "Returns" tab and a "Return" action per returnable order.
 *
 * Both lead to the My Account endpoint `returns` (/my-account/returns/ for all the customer's
 * orders, /my-account/returns/<order id>/ for one order). That endpoint is the plugin route that
 * opens the portal: for the signed-in customer it builds a fresh customer token (RC_Signing, valid
 * 300 s, random nonce) and redirects the browser to
 *     <connector url>/woocommerce/plugin/enter?token=<token>
 * The email and ids travel only inside the signed token, never as plain URL parameters.
 *
 * @package ReturnsConnector
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The Returns tab, the per-order Return action and the redirect to the portal.
 */
final class RC_Account {

	const ENDPOINT = 'returns';

	/**
	 * Hooks.
	 */
	public static function init() {
		add_action( 'init', array( __CLASS__, 'add_endpoint' ) );
		add_filter( 'woocommerce_get_query_vars', array( __CLASS__, 'query_vars' ) );
		add_filter( 'woocommerce_endpoint_' . self::ENDPOINT . '_title', array( __CLASS__, 'title' ) );
		add_filter( 'woocommerce_account_menu_items', array( __CLASS__, 'menu_items' ) );
		add_filter( 'woocommerce_my_account_my_orders_actions', array( __CLASS__, 'order_actions' ), 10, 2 );
		add_action( 'template_redirect', array( __CLASS__, 'maybe_open_portal' ) );
		add_action( 'woocommerce_account_' . self::ENDPOINT . '_endpoint', array( __CLASS__, 'render_endpoint' ) );
	}

	/**
	 * The rewrite endpoint (WooCommerce adds the same from its query vars; activation needs it
	 * before flushing the rules).
	 */
	public static function add_endpoint() {
		add_rewrite_endpoint( self::ENDPOINT, EP_ROOT | EP_PAGES );
	}

	/**
	 * Registers the endpoint with WooCommerce (so is_wc_endpoint_url(), wc_get_endpoint_url() and
	 * the account menu know it).
	 *
	 * @param array $vars WooCommerce query vars.
	 * @return array
	 */
	public static function query_vars( $vars ) {
		$vars[ self::ENDPOINT ] = self::ENDPOINT;
		return $vars;
	}

	/**
	 * The endpoint's page title.
	 *
	 * @return string
	 */
	public static function title() {
		return __( 'Returns', 'returns-connector' );
	}

	/**
	 * The "Returns" tab, before "Log out".
	 *
	 * @param array $items Menu items.
	 * @return array
	 */
	public static function menu_items( $items ) {
		if ( ! RC_Settings::is_configured() ) {
			return $items;
		}
		$logout = isset( $items['customer-logout'] ) ? array( 'customer-logout' => $items['customer-logout'] ) : array();
		unset( $items['customer-logout'] );
		$items[ self::ENDPOINT ] = __( 'Returns', 'returns-connector' );
		return $items + $logout;
	}

	/**
	 * Order statuses that get a "Return" action (filter `rc_returnable_statuses`).
	 *
	 * @return string[]
	 */
	public static function returnable_statuses() {
		return (array) apply_filters( 'rc_returnable_statuses', array( 'completed' ) );
	}

	/**
	 * A "Return" action on the customer's returnable orders.
	 *
	 * @param array    $actions Actions.
	 * @param WC_Order $order   Order.
	 * @return array
	 */
	public static function order_actions( $actions, $order ) {
		if ( RC_Settings::is_configured() && $order instanceof WC_Order && $order->has_status( self::returnable_statuses() ) ) {
			$actions['rc-return'] = array(
				'url'  => self::portal_route( $order->get_id() ),
				'name' => __( 'Return', 'returns-connector' ),
			);
		}
		return $actions;
	}

	/**
	 * The plugin route that opens the portal (optionally for one order).
	 *
	 * @param int|null $order_id Order id.
	 * @return string
	 */
	public static function portal_route( $order_id = null ) {
		return wc_get_endpoint_url( self::ENDPOINT, $order_id ? (string) absint( $order_id ) : '', wc_get_page_permalink( 'myaccount' ) );
	}

	/**
	 * The connector URL the browser is sent to with a token.
	 *
	 * @param string $token Customer token.
	 * @return string
	 */
	public static function enter_url( $token ) {
		return RC_Settings::connector_url() . '/woocommerce/plugin/enter?token=' . rawurlencode( $token );
	}

	/**
	 * On the returns endpoint, for a signed-in customer: redirect to the portal with a fresh token.
	 * Visitors who are not signed in see WooCommerce's login form (the endpoint is in My Account).
	 */
	public static function maybe_open_portal() {
		if ( ! function_exists( 'is_wc_endpoint_url' ) || ! is_wc_endpoint_url( self::ENDPOINT ) || ! is_user_logged_in() || ! RC_Settings::is_configured() ) {
			return;
		}
		$user     = wp_get_current_user();
		$value    = (string) get_query_var( self::ENDPOINT );
		$order_id = null;
		$email    = (string) $user->user_email;

		if ( '' !== trim( $value, '/' ) ) {
			$order = ctype_digit( trim( $value, '/' ) ) ? wc_get_order( (int) trim( $value, '/' ) ) : false;
			// Only the customer's own returnable orders; anything else goes back to the orders list.
			if ( ! $order instanceof WC_Order || (int) $order->get_customer_id() !== (int) $user->ID || ! $order->has_status( self::returnable_statuses() ) ) {
				wc_add_notice( __( 'This order cannot be returned online.', 'returns-connector' ), 'error' );
				wp_safe_redirect( wc_get_account_endpoint_url( 'orders' ) );
				exit;
			}
			$order_id = $order->get_id();
			// The synced order carries its billing email, which may differ from the account's.
			$email = $order->get_billing_email() ? $order->get_billing_email() : $email;
		}

		try {
			$token = RC_Signing::fresh_customer_token( RC_Settings::secret(), RC_Settings::shop(), (int) $user->ID, $email, $order_id );
		} catch ( Exception $e ) {
			wc_add_notice( __( 'The returns portal could not be opened. Please try again later.', 'returns-connector' ), 'error' );
			wp_safe_redirect( wc_get_account_endpoint_url( 'dashboard' ) );
			exit;
		}
		nocache_headers();
		// The token is single-use and short-lived; keep the My Account URL out of the connector's logs.
		header( 'Referrer-Policy: no-referrer' );
		wp_safe_redirect( self::enter_url( $token ), 303, 'Returns Connector' );
		exit;
	}

	/**
	 * What the tab shows when it cannot redirect (the store is not connected yet).
	 */
	public static function render_endpoint() {
		echo '<p>' . esc_html__( 'Online returns are not available right now. Please contact us to return an item.', 'returns-connector' ) . '</p>';
	}
}
