/**
 * Returns Connector: the Refund buttons of the order screen's Returns box.
 * Posts to admin-ajax.php (action rc_refund with the box's nonce) and shows the answer as text.
 */
( function () {
	'use strict';
	var settings = window.rcOrderMetabox;
	if ( ! settings ) {
		return;
	}
	document.addEventListener( 'click', function ( event ) {
		var button = event.target.closest ? event.target.closest( 'button.rc-refund' ) : null;
		if ( ! button || button.disabled ) {
			return;
		}
		event.preventDefault();
		var table = button.closest( 'table.rc-returns' );
		var result = button.parentNode.querySelector( '.rc-refund-result' );
		if ( ! table || ! result || ! window.confirm( button.getAttribute( 'data-confirm' ) ) ) {
			return;
		}
		var body = new FormData();
		body.append( 'action', settings.action );
		body.append( '_ajax_nonce', table.getAttribute( 'data-nonce' ) );
		body.append( 'order_id', table.getAttribute( 'data-order' ) );
		body.append( 'return_id', button.getAttribute( 'data-return' ) );
		if ( button.getAttribute( 'data-manual' ) === '1' ) {
			body.append( 'manual', '1' );
		}
		button.disabled = true;
		result.textContent = settings.working;
		fetch( settings.ajaxUrl, { method: 'POST', body: body, credentials: 'same-origin' } )
			.then( function ( response ) {
				return response.json();
			} )
			.then( function ( answer ) {
				var message = answer && answer.data && answer.data.message ? answer.data.message : settings.failed;
				result.textContent = message;
				if ( answer && answer.success ) {
					button.parentNode.removeChild( button );
				} else {
					button.disabled = false;
				}
			} )
			.catch( function () {
				result.textContent = settings.failed;
				button.disabled = false;
			} );
	} );
}() );
