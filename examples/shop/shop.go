// Package shop is DMSC's example application: three ordinary gRPC services
// (api/shop/shop.proto) that call each other by service name. frontend
// (/shop/frontend) takes orders and calls cart (/shop/cart), which prices
// items by calling catalog (/shop/catalog). The servers know nothing of the
// fabric: they take gRPC clients for what they call, and are served on
// whatever listener the caller gives them — package pod's, in the demo.
package shop

import (
	"context"
	"sort"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoppb "github.com/dmsc-mesh/dmsc/api/shop"
)

// Service names of the application.
const (
	FrontendService = "/shop/frontend"
	CartService     = "/shop/cart"
	CatalogService  = "/shop/catalog"
)

// Items is the demo catalog.
var Items = []*shoppb.Item{
	{Sku: "book", Name: "The Art of Computer Programming", PriceCents: 19900},
	{Sku: "mug", Name: "Mug, 350 ml", PriceCents: 1250},
	{Sku: "switch", Name: "Tofino switch (used)", PriceCents: 990000},
	{Sku: "cable", Name: "QSFP28 cable, 3 m", PriceCents: 4900},
}

// Catalog serves the catalog.
type Catalog struct {
	shoppb.UnimplementedCatalogServer
	// ServedBy names this instance in answers (its instance key).
	ServedBy func() string
	items    map[string]*shoppb.Item
}

// NewCatalog serves items.
func NewCatalog(items []*shoppb.Item, servedBy func() string) *Catalog {
	c := &Catalog{ServedBy: servedBy, items: map[string]*shoppb.Item{}}
	for _, it := range items {
		c.items[it.Sku] = it
	}
	return c
}

func (c *Catalog) answer(it *shoppb.Item) *shoppb.Item {
	return &shoppb.Item{Sku: it.Sku, Name: it.Name, PriceCents: it.PriceCents, ServedBy: c.ServedBy()}
}

// GetItem returns one item.
func (c *Catalog) GetItem(_ context.Context, req *shoppb.GetItemRequest) (*shoppb.Item, error) {
	it, ok := c.items[req.GetSku()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "catalog has no item %q", req.GetSku())
	}
	return c.answer(it), nil
}

// ListItems streams the catalog in sku order.
func (c *Catalog) ListItems(_ *shoppb.ListItemsRequest, stream shoppb.Catalog_ListItemsServer) error {
	skus := make([]string, 0, len(c.items))
	for s := range c.items {
		skus = append(skus, s)
	}
	sort.Strings(skus)
	for _, s := range skus {
		if err := stream.Send(c.answer(c.items[s])); err != nil {
			return err
		}
	}
	return nil
}

// Cart keeps carts in memory and prices items at the catalog.
type Cart struct {
	shoppb.UnimplementedCartServer
	Catalog  shoppb.CatalogClient
	ServedBy func() string

	mu    sync.Mutex
	carts map[string][]*shoppb.CartLine
}

// NewCart prices with catalog.
func NewCart(catalog shoppb.CatalogClient, servedBy func() string) *Cart {
	return &Cart{Catalog: catalog, ServedBy: servedBy, carts: map[string][]*shoppb.CartLine{}}
}

// AddItem prices the item and adds it.
func (c *Cart) AddItem(ctx context.Context, req *shoppb.AddItemRequest) (*shoppb.CartView, error) {
	if req.GetUser() == "" {
		return nil, status.Error(codes.InvalidArgument, "no user")
	}
	q := max(req.GetQuantity(), 1)
	it, err := c.Catalog.GetItem(ctx, &shoppb.GetItemRequest{Sku: req.GetSku()})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := c.carts[req.GetUser()]
	found := false
	for _, l := range lines {
		if l.Item.GetSku() == it.GetSku() {
			l.Quantity += q
			l.Item = it
			found = true
		}
	}
	if !found {
		lines = append(lines, &shoppb.CartLine{Item: it, Quantity: q})
	}
	c.carts[req.GetUser()] = lines
	return c.view(req.GetUser()), nil
}

// GetCart returns a cart.
func (c *Cart) GetCart(_ context.Context, req *shoppb.GetCartRequest) (*shoppb.CartView, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.view(req.GetUser()), nil
}

func (c *Cart) view(user string) *shoppb.CartView {
	v := &shoppb.CartView{User: user, ServedBy: c.ServedBy()}
	for _, l := range c.carts[user] {
		v.Lines = append(v.Lines, &shoppb.CartLine{Item: l.Item, Quantity: l.Quantity})
		v.TotalCents += l.Item.GetPriceCents() * int64(l.Quantity)
	}
	return v
}

// Frontend takes orders.
type Frontend struct {
	shoppb.UnimplementedFrontendServer
	Cart     shoppb.CartClient
	ServedBy func() string
}

// Buy adds every sku of the order to the user's cart.
func (f *Frontend) Buy(ctx context.Context, req *shoppb.BuyRequest) (*shoppb.BuyReply, error) {
	if len(req.GetSkus()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "an order needs at least one sku")
	}
	var v *shoppb.CartView
	for _, sku := range req.GetSkus() {
		var err error
		if v, err = f.Cart.AddItem(ctx, &shoppb.AddItemRequest{User: req.GetUser(), Sku: sku, Quantity: 1}); err != nil {
			return nil, err
		}
	}
	return &shoppb.BuyReply{Cart: v, ServedBy: f.ServedBy()}, nil
}
